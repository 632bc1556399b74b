/* Optional compiled hot loops of the codec and the book (see mmdaemon/speedups.py).
 *
 * Each function here has a pure-Python twin that stays the reference: the results must be
 * identical, and anything unusual (a non-list, a string that is not plain ASCII decimal text,
 * a value that would not fit in 64 bits, a remainder) is handed back to the Python code, so
 * errors and their messages come from one place only.
 *
 * State: a BookSide holds the levels of one side of the book (that is its job); a Decoder
 * holds its instrument's grids, the Python callables it hands back to, and two scratch
 * buffers the depth scanner refills for every frame (no result depends on what a previous
 * frame left there); the module holds four constants made once at import. Nothing else
 * outlives a call. `make sanitize` runs all of it under AddressSanitizer and UBSan, and
 * `make fuzz-c` fuzzes it with libFuzzer (fuzz/README.md).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>

/* Longest text taken here; longer goes to Python (which refuses beyond 40 characters). */
#define MAX_CHARS 40
/* The largest number of units DecimalScaler accepts (model.MAX_UNITS). */
#define MAX_UNITS (((long long)1 << 62) - 1)
/* 10^18 < 2^63: the largest power of ten a shift may need here. */
#define MAX_SHIFT 18

static const unsigned long long POW10[MAX_SHIFT + 1] = {
    1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL,
    100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL,
    10000000000000ULL, 100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
    100000000000000000ULL, 1000000000000000000ULL,
};

/* A unit as DecimalScaler holds it: unit = unit_int x 10^-exp. */
typedef struct {
    unsigned long long unit_int;
    int exp;
} Unit;

/* Exact units of plain decimal text ``s[0..n)`` ("61837.63000000" with unit 0.01 ->
 * 6183763). Returns 1 and sets *out, or 0 when the Python parser must decide (not an error
 * here). */
static int
units_of(const unsigned char *s, Py_ssize_t n, const Unit *unit, long long *out)
{
    if (n == 0 || n > MAX_CHARS) {
        return 0;
    }
    unsigned long long value = 0;
    int places = -1, ndigits = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= '0' && c <= '9') {
            if (value > (ULLONG_MAX - 9) / 10) {
                return 0;
            }
            value = value * 10 + (c - '0');
            ndigits++;
            if (places >= 0) {
                places++;
            }
        }
        else if (c == '.' && places < 0) {
            places = 0;
        }
        else {
            return 0;
        }
    }
    if (ndigits == 0) {
        return 0;
    }
    if (places < 0) {
        places = 0;
    }
    int shift = unit->exp - places;
    unsigned __int128 scaled, div;
    if (shift >= 0) {
        if (shift > MAX_SHIFT) {
            return 0;
        }
        scaled = (unsigned __int128)value * POW10[shift];
        div = unit->unit_int;
    }
    else {
        if (-shift > MAX_SHIFT) {
            return 0;
        }
        scaled = value;
        div = (unsigned __int128)unit->unit_int * POW10[-shift];
    }
    unsigned long long units;
    if ((scaled >> 64) == 0 && (div >> 64) == 0) {
        /* the usual case, in 64 bits: a 128-bit division is a slow library call */
        unsigned long long s64 = (unsigned long long)scaled, d64 = (unsigned long long)div;
        if (s64 % d64 != 0) {
            return 0;
        }
        units = s64 / d64;
    }
    else {
        if (scaled % div != 0 || scaled / div > (unsigned __int128)MAX_UNITS) {
            return 0;
        }
        units = (unsigned long long)(scaled / div);
    }
    if (units > (unsigned long long)MAX_UNITS) {  /* the Python parser refuses it */
        return 0;
    }
    *out = (long long)units;
    return 1;
}

/* units_of for a str (compact ASCII only). */
static int
fast_units(PyObject *text, const Unit *unit, long long *out)
{
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_COMPACT_ASCII(text)) {
        return 0;
    }
    return units_of(PyUnicode_1BYTE_DATA(text), PyUnicode_GET_LENGTH(text), unit, out);
}

/* New reference to the units of ``text``, through ``parse`` (Python) when not plain. */
static PyObject *
to_units(PyObject *text, const Unit *unit, PyObject *parse)
{
    long long units;
    if (fast_units(text, unit, &units)) {
        return PyLong_FromLongLong(units);
    }
    return PyObject_CallOneArg(parse, text);
}

/* ---- packed levels ------------------------------------------------------------------------
 *
 * The levels of a depth diff decoded from bytes: (price ticks, size lots) pairs of 64-bit
 * ints in one block, read as a sequence of (price, size) tuples by Python code (the book's
 * Python reference, tests) and directly by the compiled BookSide. A list of tuples would
 * cost three objects per level, made and freed for every level of every diff.
 */

typedef struct {
    PyObject_VAR_HEAD
    long long v[1];  /* price, size, price, size, ... (2 x ob_size) */
} Levels;

static PyTypeObject LevelsType;

static PyObject *
levels_from(const long long *v, Py_ssize_t n)
{
    Levels *out = PyObject_NewVar(Levels, &LevelsType, n);
    if (out != NULL && n > 0) {
        memcpy(out->v, v, (size_t)n * 2 * sizeof(long long));
    }
    return (PyObject *)out;
}

static Py_ssize_t
Levels_len(Levels *self)
{
    return Py_SIZE(self);
}

static PyObject *
Levels_item(Levels *self, Py_ssize_t i)
{
    if (i < 0 || i >= Py_SIZE(self)) {
        PyErr_SetString(PyExc_IndexError, "levels index out of range");
        return NULL;
    }
    return Py_BuildValue("(LL)", self->v[2 * i], self->v[2 * i + 1]);
}

static PyObject *
Levels_richcompare(Levels *self, PyObject *other, int op)
{
    if (op != Py_EQ && op != Py_NE) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    int equal;
    if (Py_TYPE(other) == &LevelsType) {
        Py_ssize_t n = Py_SIZE(self);
        equal = n == Py_SIZE(other)
            && memcmp(self->v, ((Levels *)other)->v, (size_t)n * 2 * sizeof(long long)) == 0;
    }
    else if (PyList_Check(other)) {
        /* as the list of (price, size) tuples it stands for would compare */
        PyObject *mine = PySequence_List((PyObject *)self);
        if (mine == NULL) {
            return NULL;
        }
        PyObject *theirs = PySequence_List(other);
        equal = theirs == NULL ? -1 : PyObject_RichCompareBool(mine, theirs, Py_EQ);
        Py_DECREF(mine);
        Py_XDECREF(theirs);
        if (equal < 0) {
            return NULL;
        }
    }
    else {
        Py_RETURN_NOTIMPLEMENTED;
    }
    return PyBool_FromLong(op == Py_EQ ? equal : !equal);
}

static PyObject *
Levels_repr(Levels *self)
{
    PyObject *list = PySequence_List((PyObject *)self);
    if (list == NULL) {
        return NULL;
    }
    PyObject *out = PyUnicode_FromFormat("Levels(%R)", list);
    Py_DECREF(list);
    return out;
}

/* levels[i] (negative from the end) and levels[a:b:c] (a list), as the list would give. */
static PyObject *
Levels_subscript(Levels *self, PyObject *key)
{
    if (PySlice_Check(key)) {
        PyObject *list = PySequence_List((PyObject *)self);
        if (list == NULL) {
            return NULL;
        }
        PyObject *out = PyObject_GetItem(list, key);
        Py_DECREF(list);
        return out;
    }
    Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
    if (i == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return Levels_item(self, i < 0 ? i + Py_SIZE(self) : i);
}

/* ``name`` of the equivalent list, called with ``args``: index() and count() as a list. */
static PyObject *
as_list_call(Levels *self, const char *name, PyObject *args)
{
    PyObject *list = PySequence_List((PyObject *)self);
    if (list == NULL) {
        return NULL;
    }
    PyObject *method = PyObject_GetAttrString(list, name);
    PyObject *out = method == NULL ? NULL : PyObject_Call(method, args, NULL);
    Py_XDECREF(method);
    Py_DECREF(list);
    return out;
}

static PyObject *
Levels_index(Levels *self, PyObject *args)
{
    return as_list_call(self, "index", args);
}

static PyObject *
Levels_count(Levels *self, PyObject *args)
{
    return as_list_call(self, "count", args);
}

/* Pickled and copied as the list of tuples it stands for. */
static PyObject *
Levels_reduce(Levels *self, PyObject *unused)
{
    PyObject *list = PySequence_List((PyObject *)self);
    if (list == NULL) {
        return NULL;
    }
    return Py_BuildValue("(O(N))", (PyObject *)&PyList_Type, list);
}

static PyMethodDef Levels_methods[] = {
    {"index", (PyCFunction)Levels_index, METH_VARARGS, "As list.index."},
    {"count", (PyCFunction)Levels_count, METH_VARARGS, "As list.count."},
    {"__reduce__", (PyCFunction)Levels_reduce, METH_NOARGS, "Pickles as a list of tuples."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Levels_as_sequence = {
    .sq_length = (lenfunc)Levels_len,
    .sq_item = (ssizeargfunc)Levels_item,
};

static PyMappingMethods Levels_as_mapping = {
    .mp_length = (lenfunc)Levels_len,
    .mp_subscript = (binaryfunc)Levels_subscript,
};

static PyTypeObject LevelsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mmdaemon._speedups.Levels",
    .tp_basicsize = offsetof(Levels, v),
    .tp_itemsize = 2 * sizeof(long long),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The (price ticks, size lots) levels of a scanned depth diff or snapshot, packed; "
              "a read-only sequence of tuples, equal to a list of the same tuples.",
    .tp_dealloc = (destructor)PyObject_Del,
    .tp_as_sequence = &Levels_as_sequence,
    .tp_as_mapping = &Levels_as_mapping,
    .tp_methods = Levels_methods,
    .tp_richcompare = (richcmpfunc)Levels_richcompare,
    .tp_repr = (reprfunc)Levels_repr,
    .tp_hash = PyObject_HashNotImplemented,
};

/* ---- depth diffs straight from the frame's bytes ---------------------------------------------
 *
 * A Binance depth diff is mostly its levels: ~100 and up to 1,000 [price, size] pairs of
 * decimal text. Parsing it into Python objects (a list and two strings per level) and then
 * converting those costs more than everything else done with the frame. This scanner reads
 * a combined-stream depth frame, {"stream": "<symbol>@depth...", "data": {...}}, as it is:
 * the levels go from text to ticks and lots in one pass. It accepts only what it fully
 * understands -- the known keys once each, integers without fraction or exponent, ASCII
 * strings without escapes, plain decimal levels on the instrument's grids, the symbol
 * expected, first id <= last id, nothing after the object -- and hands anything else to the
 * JSON parser path, which decides (and reports) exactly as before.
 */

typedef struct {
    const unsigned char *p, *end;
} Cursor;

static void
skip_ws(Cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) {
        c->p++;
    }
}

static int
take(Cursor *c, unsigned char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A string of printable ASCII without escapes: its text in [*s, *s + *n). */
static int
take_str(Cursor *c, const unsigned char **s, Py_ssize_t *n)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p != '"') {
        return 0;
    }
    const unsigned char *start = ++c->p;
    while (c->p < c->end) {
        unsigned char ch = *c->p;
        if (ch == '"') {
            *s = start;
            *n = c->p - start;
            c->p++;
            return 1;
        }
        if (ch < 0x20 || ch == '\\' || ch >= 0x80) {
            return 0;
        }
        c->p++;
    }
    return 0;
}

/* A JSON integer (no fraction, no exponent) of at most 62 bits. */
static int
take_int(Cursor *c, long long *out)
{
    skip_ws(c);
    int negative = c->p < c->end && *c->p == '-';
    if (negative) {
        c->p++;
    }
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') {
        return 0;
    }
    if (*c->p == '0' && c->p + 1 < c->end && c->p[1] >= '0' && c->p[1] <= '9') {
        return 0;  /* a leading zero: not JSON */
    }
    long long value = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (value > (MAX_UNITS - 9) / 10) {
            return 0;
        }
        value = value * 10 + (*c->p - '0');
        c->p++;
    }
    if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E')) {
        return 0;
    }
    *out = negative ? -value : value;
    return 1;
}

typedef struct {
    long long *v;
    Py_ssize_t n, cap;  /* levels */
} LevelBuffer;

static int
buffer_push(LevelBuffer *b, long long price, long long size)
{
    if (b->n == b->cap) {
        Py_ssize_t cap = b->cap ? 2 * b->cap : 256;
        long long *v = PyMem_Realloc(b->v, (size_t)cap * 2 * sizeof(long long));
        if (v == NULL) {
            return -1;
        }
        b->v = v;
        b->cap = cap;
    }
    b->v[2 * b->n] = price;
    b->v[2 * b->n + 1] = size;
    b->n++;
    return 0;
}

/* [["price", "size"], ...] on the grids into ``out`` (emptied first): 1, 0 (not plain), or
 * -1 (no memory). */
static int
take_levels(Cursor *c, const Unit *price_unit, const Unit *size_unit, LevelBuffer *out)
{
    out->n = 0;
    if (!take(c, '[')) {
        return 0;
    }
    if (take(c, ']')) {
        return 1;
    }
    do {
        const unsigned char *p, *q;
        Py_ssize_t np, nq;
        long long price, size;
        if (!take(c, '[') || !take_str(c, &p, &np) || !take(c, ',') || !take_str(c, &q, &nq)
            || !take(c, ']') || !units_of(p, np, price_unit, &price)
            || !units_of(q, nq, size_unit, &size)) {
            return 0;
        }
        if (buffer_push(out, price, size) < 0) {
            PyErr_NoMemory();
            return -1;
        }
    } while (take(c, ','));
    return take(c, ']');
}

static int
same_text(const unsigned char *s, Py_ssize_t n, const char *text)
{
    return (size_t)n == strlen(text) && memcmp(s, text, (size_t)n) == 0;
}

/* The fields of a depth diff as the scanner read them. */
typedef struct {
    long long first, last, prev, time_ms;
    int has_prev, has_time, has_event_time;
    long long event_time_ms;
} DepthIds;

static int
read_unit(PyObject *unit_int, PyObject *exp, Unit *unit)
{
    unsigned long long u = PyLong_AsUnsignedLongLong(unit_int);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        return -1;
    }
    long e = PyLong_AsLong(exp);
    if (e == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (u == 0 || u > POW10[MAX_SHIFT] || e < 0 || e > MAX_CHARS) {
        PyErr_SetString(PyExc_ValueError, "unit outside the compiled codec's range");
        return -1;
    }
    unit->unit_int = u;
    unit->exp = (int)e;
    return 0;
}

/* Field names, interned once. */
static PyObject *KEY_stream, *KEY_data, *NS_PER_MS, *ZERO;

/* Borrowed value of ``key`` in the exact dict ``data``, or NULL (no exception) if absent. */
static PyObject *
field(PyObject *data, PyObject *key)
{
    PyObject *value = PyDict_GetItemWithError(data, key);
    if (value == NULL) {
        PyErr_Clear();
    }
    return value;
}

/* Borrowed values of the one-letter fields ``names`` of the exact dict ``data`` into
 * ``out`` (NULL where absent), in one pass over the dict: a venue object has a handful of
 * keys, and a lookup per field costs a hash probe and a string comparison each. */
static void
scan(PyObject *data, const char *names, PyObject **out)
{
    size_t n = strlen(names);
    memset(out, 0, n * sizeof(PyObject *));
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(data, &pos, &key, &value)) {
        if (PyUnicode_CheckExact(key) && PyUnicode_IS_COMPACT_ASCII(key)
            && PyUnicode_GET_LENGTH(key) == 1) {
            const char *at = memchr(names, PyUnicode_1BYTE_DATA(key)[0], n);
            if (at != NULL) {
                out[at - names] = value;
            }
        }
    }
}

/* A venue time in ms (an exact int, or NULL: absent) as ns; absent is 0. New reference, or
 * NULL without an exception when it is not an exact int (the Python twin raises for it). */
static PyObject *
time_ns(PyObject *ms)
{
    if (ms == NULL) {
        return Py_NewRef(ZERO);
    }
    if (!PyLong_CheckExact(ms)) {
        return NULL;
    }
    return PyNumber_Multiply(ms, NS_PER_MS);
}

typedef struct {
    PyObject_HEAD
    Unit price;
    Unit size;
    PyObject *symbol;
    PyObject *price_parse;
    PyObject *size_parse;
    PyObject *top_cls;
    PyObject *trade_cls;
    PyObject *buy;
    PyObject *sell;
    PyObject *levels_fallback;
    PyObject *ticker_fallback;
    PyObject *trade_fallback;
    PyObject *loads;
    PyObject *msg_fallback;
    PyObject *decode_fallback;
    PyObject *depth;         /* the codec's Python continuation of a scanned depth diff */
    PyObject *snapshot;      /* ... and of a scanned REST snapshot */
    const char *symbol_text; /* the symbol's UTF-8, owned by ``symbol`` */
    Py_ssize_t symbol_len;
    int usdm;                /* USD-M rules: prev id from "pu" (spot: first id - 1) */
    LevelBuffer bids, asks;  /* the scanner's scratch, reused frame after frame */
} Decoder;

/* Units of text that must be plain, for the all-or-nothing paths: 1 and *out set, or 0. */
static int
plain_units(PyObject *text, const Unit *unit, long long *out)
{
    return text != NULL && fast_units(text, unit, out);
}

static int
same_symbol(Decoder *self, PyObject *symbol)
{
    return symbol == self->symbol
        || (symbol != NULL && PyUnicode_CheckExact(symbol)
            && PyUnicode_Compare(symbol, self->symbol) == 0);
}

/* A NamedTuple instance of ``cls`` holding ``items`` (new references, stolen, all non-NULL),
 * built as tuple.__new__ builds one. */
static PyObject *
make_event(PyObject *cls, PyObject **items, Py_ssize_t n)
{
    PyObject *event = ((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, n);
    if (event == NULL) {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_DECREF(items[i]);
        }
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTuple_SET_ITEM(event, i, items[i]);
    }
    PyObject *events = PyList_New(1);
    if (events == NULL) {
        Py_DECREF(event);
        return NULL;
    }
    PyList_SET_ITEM(events, 0, event);
    return events;
}

static int
all_made(PyObject **items, Py_ssize_t n)
{
    int ok = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        ok &= items[i] != NULL;
    }
    if (!ok) {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_XDECREF(items[i]);
        }
    }
    return ok;
}

PyDoc_STRVAR(book_ticker_doc,
"book_ticker(data, recv_ns)\n--\n\n"
"A bookTicker's data object as [TopOfBook]; anything unusual goes to the Python twin.");

/* [TopOfBook] of a plain bookTicker data object; NULL without an exception when it is not
 * plain (the Python twin decides), NULL with one on a real error (no memory). */
static PyObject *
ticker_fast(Decoder *self, PyObject *data, PyObject *recv_ns)
{
    long long bid, bid_size, ask, ask_size;
    if (!PyDict_CheckExact(data)) {
        return NULL;
    }
    PyObject *f[7];  /* s b a B A u T */
    scan(data, "sbaBAuT", f);
    PyObject *update_id = f[5];
    if (!same_symbol(self, f[0]) || !plain_units(f[1], &self->price, &bid)
        || !plain_units(f[2], &self->price, &ask) || !plain_units(f[3], &self->size, &bid_size)
        || !plain_units(f[4], &self->size, &ask_size)
        || update_id == NULL || !PyLong_CheckExact(update_id)) {
        return NULL;
    }
    PyObject *exch_ns = time_ns(f[6]);
    if (exch_ns == NULL) {
        return NULL;
    }
    PyObject *items[7] = {
        Py_NewRef(update_id), PyLong_FromLongLong(bid), PyLong_FromLongLong(bid_size),
        PyLong_FromLongLong(ask), PyLong_FromLongLong(ask_size), exch_ns, Py_NewRef(recv_ns),
    };
    if (!all_made(items, 7)) {
        return NULL;
    }
    return make_event(self->top_cls, items, 7);
}

/* A decoder the garbage collector has cleared (tp_clear breaks a reference cycle) holds
 * nothing any more: refuse to run rather than follow a NULL. */
static int
cleared(Decoder *self)
{
    if (self->symbol == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the decoder was cleared");
        return 1;
    }
    return 0;
}

typedef PyObject *(*FastPath)(Decoder *, PyObject *, PyObject *);

/* A method taking (data, recv_ns): the compiled path, else the Python twin. */
static PyObject *
fast_or_twin(Decoder *self, FastPath fast, PyObject *twin, PyObject *const *args,
             Py_ssize_t nargs)
{
    if (cleared(self)) {
        return NULL;
    }
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "expected 2 arguments: data, recv_ns");
        return NULL;
    }
    PyObject *events = fast(self, args[0], args[1]);
    if (events != NULL || PyErr_Occurred()) {
        return events;
    }
    return PyObject_Vectorcall(twin, args, 2, NULL);
}

static PyObject *
Decoder_book_ticker(Decoder *self, PyObject *const *args, Py_ssize_t nargs)
{
    return fast_or_twin(self, ticker_fast, self->ticker_fallback, args, nargs);
}

PyDoc_STRVAR(trade_doc,
"trade(data, recv_ns)\n--\n\n"
"A trade's data object as [Trade]; anything unusual goes to the Python twin.");

/* [Trade] of a plain trade data object; NULL as ticker_fast. */
static PyObject *
trade_fast(Decoder *self, PyObject *data, PyObject *recv_ns)
{
    long long price, size;
    if (!PyDict_CheckExact(data)) {
        return NULL;
    }
    PyObject *f[6];  /* s q m p t T */
    scan(data, "sqmptT", f);
    PyObject *maker_is_buyer = f[2], *trade_id = f[4];
    if (!same_symbol(self, f[0]) || !plain_units(f[1], &self->size, &size) || size == 0
        || (maker_is_buyer != Py_True && maker_is_buyer != Py_False)
        || !plain_units(f[3], &self->price, &price)
        || trade_id == NULL || !PyLong_CheckExact(trade_id)) {
        return NULL;
    }
    PyObject *exch_ns = time_ns(f[5]);
    if (exch_ns == NULL) {
        return NULL;
    }
    /* the maker bought: the aggressor sold */
    PyObject *aggressor = maker_is_buyer == Py_True ? self->sell : self->buy;
    PyObject *items[6] = {
        PyLong_FromLongLong(price), PyLong_FromLongLong(size), Py_NewRef(aggressor),
        Py_NewRef(trade_id), exch_ns, Py_NewRef(recv_ns),
    };
    if (!all_made(items, 6)) {
        return NULL;
    }
    return make_event(self->trade_cls, items, 6);
}

static PyObject *
Decoder_trade(Decoder *self, PyObject *const *args, Py_ssize_t nargs)
{
    return fast_or_twin(self, trade_fast, self->trade_fallback, args, nargs);
}

/* The kind of a combined stream name: 1 "<symbol>@bookTicker", 2 "<symbol>@trade", 0 any
 * other (the Python twin routes those). */
static int
stream_kind(PyObject *stream)
{
    if (!PyUnicode_CheckExact(stream) || !PyUnicode_IS_COMPACT_ASCII(stream)) {
        return 0;
    }
    const char *s = (const char *)PyUnicode_1BYTE_DATA(stream);
    Py_ssize_t n = PyUnicode_GET_LENGTH(stream);
    const char *at = memchr(s, '@', (size_t)n);
    if (at == NULL) {
        return 0;
    }
    Py_ssize_t rest = n - (at + 1 - s);
    if (rest == 10 && memcmp(at + 1, "bookTicker", 10) == 0) {
        return 1;
    }
    if (rest == 5 && memcmp(at + 1, "trade", 5) == 0) {
        return 2;
    }
    return 0;
}

PyDoc_STRVAR(decode_doc,
"decode(recv_ns, frame)\n--\n\n"
"BinanceCodec.decode for the two busiest streams: a combined-stream frame of bookTicker or\n"
"trade is decoded here; any other parsed frame goes to ``msg_fallback(msg, recv_ns)`` and a\n"
"frame the JSON parser refuses to ``decode_fallback(recv_ns, frame)``, the Python code.");

/* "<symbol>@depth" or "<symbol>@depth@<speed>": the streams the Python code routes as depth. */
static int
depth_stream(const unsigned char *s, Py_ssize_t n)
{
    const unsigned char *at = memchr(s, '@', (size_t)n);
    if (at == NULL) {
        return 0;
    }
    Py_ssize_t rest = n - (at + 1 - s);
    return (rest == 5 || (rest > 5 && at[6] == '@')) && memcmp(at + 1, "depth", 5) == 0;
}

/* The "data" object of a depth diff; as scan_depth. */
static int
scan_depth_data(Decoder *self, Cursor *c, DepthIds *ids)
{
    enum { E_ = 1, EVENT_TIME = 2, TIME = 4, SYMBOL = 8, FIRST = 16, LAST = 32, PREV = 64,
           BIDS = 128, ASKS = 256 };
    unsigned seen = 0;
    if (!take(c, '{')) {
        return 0;
    }
    do {
        const unsigned char *k, *v;
        Py_ssize_t nk, nv;
        unsigned bit;
        int ok;
        if (!take_str(c, &k, &nk) || !take(c, ':')) {
            return 0;
        }
        if (same_text(k, nk, "e")) {
            bit = E_;
            ok = take_str(c, &v, &nv);  /* the Python code does not read it either */
        }
        else if (same_text(k, nk, "E")) {
            bit = EVENT_TIME;
            ok = take_int(c, &ids->event_time_ms);
        }
        else if (same_text(k, nk, "T")) {
            bit = TIME;
            ok = take_int(c, &ids->time_ms);
        }
        else if (same_text(k, nk, "s")) {
            bit = SYMBOL;
            ok = take_str(c, &v, &nv) && nv == self->symbol_len
                 && memcmp(v, self->symbol_text, (size_t)nv) == 0;
        }
        else if (same_text(k, nk, "U")) {
            bit = FIRST;
            ok = take_int(c, &ids->first);
        }
        else if (same_text(k, nk, "u")) {
            bit = LAST;
            ok = take_int(c, &ids->last);
        }
        else if (same_text(k, nk, "pu")) {
            bit = PREV;
            ok = take_int(c, &ids->prev);
        }
        else if (same_text(k, nk, "b") || same_text(k, nk, "a")) {
            bit = k[0] == 'b' ? BIDS : ASKS;
            ok = take_levels(c, &self->price, &self->size, bit == BIDS ? &self->bids : &self->asks);
            if (ok < 0) {
                return -1;
            }
        }
        else {
            return 0;  /* a field we do not know */
        }
        if (!ok || (seen & bit)) {
            return 0;  /* not plain, or a repeated key (JSON parsers keep the last) */
        }
        seen |= bit;
    } while (take(c, ','));
    if (!take(c, '}')) {
        return 0;
    }
    unsigned needed = SYMBOL | FIRST | LAST | BIDS | ASKS;
    if ((seen & needed) != needed || ids->first > ids->last) {
        return 0;  /* the Python code reports these */
    }
    ids->has_prev = (seen & PREV) != 0;
    ids->has_time = (seen & TIME) != 0;
    ids->has_event_time = (seen & EVENT_TIME) != 0;
    return 1;
}

/* A whole combined-stream depth frame: 1 scanned (ids and the Decoder's buffers filled), 0
 * not plain (the JSON path decides), -1 error (no memory). */
static int
scan_depth(Decoder *self, const unsigned char *frame, Py_ssize_t len, DepthIds *ids)
{
    Cursor c = {frame, frame + len};
    int stream = 0, data = 0;
    if (!take(&c, '{')) {
        return 0;
    }
    do {
        const unsigned char *k, *v;
        Py_ssize_t nk, nv;
        if (!take_str(&c, &k, &nk) || !take(&c, ':')) {
            return 0;
        }
        if (same_text(k, nk, "stream") && !stream) {
            stream = 1;
            if (!take_str(&c, &v, &nv) || !depth_stream(v, nv)) {
                return 0;
            }
        }
        else if (same_text(k, nk, "data") && !data) {
            data = 1;
            int rc = scan_depth_data(self, &c, ids);
            if (rc <= 0) {
                return rc;
            }
        }
        else {
            return 0;
        }
    } while (take(&c, ','));
    if (!take(&c, '}')) {
        return 0;
    }
    skip_ws(&c);
    return c.p == c.end && stream && data;
}

/* The events of a scanned depth diff, from the codec's Python continuation. */
static PyObject *
scanned_depth(Decoder *self, const DepthIds *ids, PyObject *recv_ns)
{
    long long time_ms = ids->has_time ? ids->time_ms
                        : ids->has_event_time ? ids->event_time_ms : 0;
    if (time_ms > LLONG_MAX / 1000000 || time_ms < -(LLONG_MAX / 1000000)) {
        return NULL;  /* not an int64 of ns: the Python path decides */
    }
    long long prev = self->usdm ? (ids->has_prev ? ids->prev : -1) : ids->first - 1;
    PyObject *bids = levels_from(self->bids.v, self->bids.n);
    PyObject *asks = bids == NULL ? NULL : levels_from(self->asks.v, self->asks.n);
    PyObject *args[7] = {
        PyLong_FromLongLong(ids->first), PyLong_FromLongLong(ids->last),
        PyLong_FromLongLong(prev), bids, asks, PyLong_FromLongLong(time_ms * 1000000),
        Py_NewRef(recv_ns),
    };
    if (!all_made(args, 7)) {
        return NULL;
    }
    PyObject *events = PyObject_Vectorcall(self->depth, args, 7, NULL);
    for (int i = 0; i < 7; i++) {
        Py_DECREF(args[i]);
    }
    return events;
}

/* ---- REST depth snapshots straight from the frame's bytes ------------------------------------
 *
 * A snapshot is the largest frame of all: 1,000 (up to 5,000) levels a side, 64 KB and more.
 * Parsed into Python objects it made two lists and two strings a level, whose allocation
 * alone ran the garbage collector several times within the one frame. It is read as the
 * depth diffs are: {"lastUpdateId": N, "E": ms, "T": ms, "bids": [...], "asks": [...]} (the
 * times USD-M only), each known key at most once, the id and the levels required, the
 * levels plain; anything else goes to the JSON path, which decides (and reports) as before.
 */

typedef struct {
    long long last, time_ms, event_time_ms;
    int has_time, has_event_time;
} SnapshotIds;

static const char SNAPSHOT_START[] = "{\"lastUpdateId\":";  /* how Binance starts one */

/* A whole snapshot frame: 1 scanned (ids and the Decoder's buffers filled), 0 not plain,
 * -1 error (no memory). */
static int
scan_snapshot(Decoder *self, const unsigned char *frame, Py_ssize_t len, SnapshotIds *ids)
{
    enum { LAST = 1, EVENT_TIME = 2, TIME = 4, BIDS = 8, ASKS = 16 };
    unsigned seen = 0;
    Cursor c = {frame, frame + len};
    if (!take(&c, '{')) {
        return 0;
    }
    do {
        const unsigned char *k;
        Py_ssize_t nk;
        unsigned bit;
        int ok;
        if (!take_str(&c, &k, &nk) || !take(&c, ':')) {
            return 0;
        }
        if (same_text(k, nk, "lastUpdateId")) {
            bit = LAST;
            ok = take_int(&c, &ids->last);
        }
        else if (same_text(k, nk, "E")) {
            bit = EVENT_TIME;
            ok = take_int(&c, &ids->event_time_ms);
        }
        else if (same_text(k, nk, "T")) {
            bit = TIME;
            ok = take_int(&c, &ids->time_ms);
        }
        else if (same_text(k, nk, "bids") || same_text(k, nk, "asks")) {
            bit = k[0] == 'b' ? BIDS : ASKS;
            ok = take_levels(&c, &self->price, &self->size, bit == BIDS ? &self->bids : &self->asks);
            if (ok < 0) {
                return -1;
            }
        }
        else {
            return 0;  /* a field we do not know ("e" would make it another kind of frame) */
        }
        if (!ok || (seen & bit)) {
            return 0;  /* not plain, or a repeated key (JSON parsers keep the last) */
        }
        seen |= bit;
    } while (take(&c, ','));
    if (!take(&c, '}')) {
        return 0;
    }
    skip_ws(&c);
    unsigned needed = LAST | BIDS | ASKS;
    if (c.p != c.end || (seen & needed) != needed) {
        return 0;
    }
    ids->has_time = (seen & TIME) != 0;
    ids->has_event_time = (seen & EVENT_TIME) != 0;
    return 1;
}

/* The events of a scanned snapshot, from the codec's Python continuation. */
static PyObject *
scanned_snapshot(Decoder *self, const SnapshotIds *ids, PyObject *recv_ns)
{
    /* the Python code's data.get("T", data.get("E", 0)) */
    long long time_ms = ids->has_time ? ids->time_ms
                        : ids->has_event_time ? ids->event_time_ms : 0;
    if (time_ms > LLONG_MAX / 1000000 || time_ms < -(LLONG_MAX / 1000000)) {
        return NULL;  /* not an int64 of ns: the Python path decides */
    }
    PyObject *bids = levels_from(self->bids.v, self->bids.n);
    PyObject *asks = bids == NULL ? NULL : levels_from(self->asks.v, self->asks.n);
    PyObject *args[5] = {
        PyLong_FromLongLong(ids->last), bids, asks, PyLong_FromLongLong(time_ms * 1000000),
        Py_NewRef(recv_ns),
    };
    if (!all_made(args, 5)) {
        return NULL;
    }
    PyObject *events = PyObject_Vectorcall(self->snapshot, args, 5, NULL);
    for (int i = 0; i < 5; i++) {
        Py_DECREF(args[i]);
    }
    return events;
}

static PyObject *
Decoder_decode(Decoder *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (cleared(self)) {
        return NULL;
    }
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "decode() takes 2 arguments");
        return NULL;
    }
    PyObject *recv_ns = args[0];
    if (PyBytes_CheckExact(args[1])) {
        DepthIds ids;
        int scanned = scan_depth(self, (const unsigned char *)PyBytes_AS_STRING(args[1]),
                                 PyBytes_GET_SIZE(args[1]), &ids);
        if (scanned < 0) {
            return NULL;
        }
        if (scanned) {
            PyObject *events = scanned_depth(self, &ids, recv_ns);
            if (events != NULL || PyErr_Occurred()) {
                return events;
            }
        }
        const unsigned char *frame = (const unsigned char *)PyBytes_AS_STRING(args[1]);
        Py_ssize_t len = PyBytes_GET_SIZE(args[1]);
        if (len > (Py_ssize_t)sizeof SNAPSHOT_START
            && memcmp(frame, SNAPSHOT_START, sizeof SNAPSHOT_START - 1) == 0) {
            SnapshotIds snap;
            scanned = scan_snapshot(self, frame, len, &snap);
            if (scanned < 0) {
                return NULL;
            }
            if (scanned) {
                PyObject *events = scanned_snapshot(self, &snap, recv_ns);
                if (events != NULL || PyErr_Occurred()) {
                    return events;
                }
            }
        }
    }
    PyObject *msg = PyObject_CallOneArg(self->loads, args[1]);
    if (msg == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError)) {  /* orjson's JSONDecodeError is one */
            return NULL;
        }
        PyErr_Clear();
        return PyObject_Vectorcall(self->decode_fallback, args, 2, NULL);
    }
    PyObject *events = NULL;
    if (PyDict_CheckExact(msg)) {
        PyObject *stream = field(msg, KEY_stream), *data = field(msg, KEY_data);
        if (stream != NULL && data != NULL) {
            switch (stream_kind(stream)) {
            case 1:
                events = ticker_fast(self, data, recv_ns);
                break;
            case 2:
                events = trade_fast(self, data, recv_ns);
                break;
            }
        }
    }
    if (events == NULL && !PyErr_Occurred()) {
        PyObject *fargs[2] = {msg, recv_ns};
        events = PyObject_Vectorcall(self->msg_fallback, fargs, 2, NULL);
    }
    Py_DECREF(msg);
    return events;
}

PyDoc_STRVAR(levels_doc,
"levels(raw)\n--\n\n"
"Venue levels [[price, size], ...] as a list of (ticks, lots) tuples. Text that is not plain\n"
"goes to the Python parsers; a ``raw`` that is not a list of 2-item lists goes whole to the\n"
"Python twin, so every error is raised by the Python code.");

static PyObject *
Decoder_levels(Decoder *self, PyObject *raw)
{
    if (cleared(self)) {
        return NULL;
    }
    if (!PyList_CheckExact(raw)) {
        return PyObject_CallOneArg(self->levels_fallback, raw);
    }
    Py_ssize_t n = PyList_GET_SIZE(raw);
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        /* checked on every pass: the Python parsers of the slow path run arbitrary code */
        PyObject *item = i < PyList_GET_SIZE(raw) ? PyList_GET_ITEM(raw, i) : NULL;
        if (item == NULL || !PyList_CheckExact(item) || PyList_GET_SIZE(item) != 2
            || !PyUnicode_CheckExact(PyList_GET_ITEM(item, 0))
            || !PyUnicode_CheckExact(PyList_GET_ITEM(item, 1))) {
            /* an unusual shape, or a price or size that is not text (the Python loop's memo
             * lookup raises TypeError for an unhashable one): the Python loop decides */
            Py_DECREF(out);
            return PyObject_CallOneArg(self->levels_fallback, raw);
        }
        PyObject *p = PyList_GET_ITEM(item, 0), *q = PyList_GET_ITEM(item, 1);
        Py_INCREF(p);
        Py_INCREF(q);
        PyObject *ticks = to_units(p, &self->price, self->price_parse);
        PyObject *lots = ticks == NULL ? NULL : to_units(q, &self->size, self->size_parse);
        Py_DECREF(p);
        Py_DECREF(q);
        if (lots == NULL) {
            Py_XDECREF(ticks);
            Py_DECREF(out);
            return NULL;
        }
        PyObject *level = PyTuple_New(2);
        if (level == NULL) {
            Py_DECREF(ticks);
            Py_DECREF(lots);
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(level, 0, ticks);
        PyTuple_SET_ITEM(level, 1, lots);
        PyList_SET_ITEM(out, i, level);
    }
    return out;
}

static PyObject *
Decoder_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {
        "symbol", "price_unit", "price_exp", "size_unit", "size_exp", "price_parse",
        "size_parse", "top_cls", "trade_cls", "buy", "sell", "loads", "levels_fallback",
        "ticker_fallback", "trade_fallback", "msg_fallback", "decode_fallback", "depth",
        "snapshot", "usdm", NULL,
    };
    PyObject *price_int, *price_exp, *size_int, *size_exp;
    Decoder *self = (Decoder *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    PyObject *symbol, *price_parse, *size_parse, *top_cls, *trade_cls, *buy, *sell, *loads;
    PyObject *levels_fallback, *ticker_fallback, *trade_fallback, *msg_fallback;
    PyObject *decode_fallback, *depth, *snapshot;
    int usdm;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "UOOOOOOOOOOOOOOOOOOp:Decoder", names, &symbol, &price_int,
            &price_exp, &size_int, &size_exp, &price_parse, &size_parse, &top_cls, &trade_cls,
            &buy, &sell, &loads, &levels_fallback, &ticker_fallback, &trade_fallback,
            &msg_fallback, &decode_fallback, &depth, &snapshot, &usdm)) {
        Py_DECREF(self);
        return NULL;
    }
    self->symbol = Py_NewRef(symbol);
    self->price_parse = Py_NewRef(price_parse);
    self->size_parse = Py_NewRef(size_parse);
    self->top_cls = Py_NewRef(top_cls);
    self->trade_cls = Py_NewRef(trade_cls);
    self->buy = Py_NewRef(buy);
    self->sell = Py_NewRef(sell);
    self->loads = Py_NewRef(loads);
    self->levels_fallback = Py_NewRef(levels_fallback);
    self->ticker_fallback = Py_NewRef(ticker_fallback);
    self->trade_fallback = Py_NewRef(trade_fallback);
    self->msg_fallback = Py_NewRef(msg_fallback);
    self->decode_fallback = Py_NewRef(decode_fallback);
    self->depth = Py_NewRef(depth);
    self->snapshot = Py_NewRef(snapshot);
    self->usdm = usdm;
    self->symbol_text = PyUnicode_AsUTF8AndSize(symbol, &self->symbol_len);
    if (self->symbol_text == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    if (read_unit(price_int, price_exp, &self->price) < 0
        || read_unit(size_int, size_exp, &self->size) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    if (!PyType_Check(top_cls) || !PyType_IsSubtype((PyTypeObject *)top_cls, &PyTuple_Type)
        || !PyType_Check(trade_cls)
        || !PyType_IsSubtype((PyTypeObject *)trade_cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "event classes must be tuple subclasses");
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
Decoder_traverse(Decoder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->symbol);
    Py_VISIT(self->price_parse);
    Py_VISIT(self->size_parse);
    Py_VISIT(self->top_cls);
    Py_VISIT(self->trade_cls);
    Py_VISIT(self->buy);
    Py_VISIT(self->sell);
    Py_VISIT(self->levels_fallback);
    Py_VISIT(self->ticker_fallback);
    Py_VISIT(self->trade_fallback);
    Py_VISIT(self->loads);
    Py_VISIT(self->msg_fallback);
    Py_VISIT(self->decode_fallback);
    Py_VISIT(self->depth);
    Py_VISIT(self->snapshot);
    return 0;
}

static int
Decoder_clear(Decoder *self)
{
    Py_CLEAR(self->symbol);
    Py_CLEAR(self->price_parse);
    Py_CLEAR(self->size_parse);
    Py_CLEAR(self->top_cls);
    Py_CLEAR(self->trade_cls);
    Py_CLEAR(self->buy);
    Py_CLEAR(self->sell);
    Py_CLEAR(self->levels_fallback);
    Py_CLEAR(self->ticker_fallback);
    Py_CLEAR(self->trade_fallback);
    Py_CLEAR(self->loads);
    Py_CLEAR(self->msg_fallback);
    Py_CLEAR(self->decode_fallback);
    Py_CLEAR(self->depth);
    Py_CLEAR(self->snapshot);
    return 0;
}

static void
Decoder_dealloc(Decoder *self)
{
    PyObject_GC_UnTrack(self);
    Decoder_clear(self);
    PyMem_Free(self->bids.v);
    PyMem_Free(self->asks.v);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Decoder_methods[] = {
    {"levels", (PyCFunction)Decoder_levels, METH_O, levels_doc},
    {"book_ticker", (PyCFunction)(void (*)(void))Decoder_book_ticker, METH_FASTCALL,
     book_ticker_doc},
    {"trade", (PyCFunction)(void (*)(void))Decoder_trade, METH_FASTCALL, trade_doc},
    {"decode", (PyCFunction)(void (*)(void))Decoder_decode, METH_FASTCALL, decode_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(Decoder_doc,
"Decoder(symbol, price_unit, price_exp, size_unit, size_exp, price_parse, size_parse,\n"
"        top_cls, trade_cls, buy, sell, loads, levels_fallback, ticker_fallback,\n"
"        trade_fallback, msg_fallback, decode_fallback, depth, snapshot, usdm)\n"
"--\n\n"
"The compiled decoding of one instrument's Binance frames (pass keywords). Units\n"
"are given as DecimalScaler holds them (unit = unit_int x 10^-exp). Each method hands\n"
"whatever is not plain to its Python twin (the *_fallback callables); a depth diff read\n"
"from bytes goes on in ``depth(first, last, prev, bids, asks, exch_ns, recv_ns)``, a REST\n"
"snapshot in ``snapshot(last, bids, asks, exch_ns, recv_ns)``, and\n"
"``usdm`` takes the previous id from \"pu\" (USD-M) rather than first id - 1 (spot).");

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mmdaemon._speedups.Decoder",
    .tp_basicsize = sizeof(Decoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = Decoder_doc,
    .tp_new = Decoder_new,
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_traverse = (traverseproc)Decoder_traverse,
    .tp_clear = (inquiry)Decoder_clear,
    .tp_methods = Decoder_methods,
};

/* ---- the book side --------------------------------------------------------------------
 *
 * BookSide as mmdaemon/book.py describes it (the Python class there is the reference), with
 * the levels in an open-addressing hash table of 64-bit prices and sizes instead of a dict of
 * Python ints: a depth diff changes hundreds of levels, and a dict's entries and key objects
 * scattered over the heap cost a cache miss or two per change. The sorted top region is an
 * array of keys (price x sign, best last). Prices and sizes must be ints of at most 62 bits
 * (the codec's DecimalScaler refuses larger); sizes are > 0 once stored.
 */

#define EMPTY LLONG_MIN
#define TOMB (LLONG_MIN + 1)
#define LIMIT MAX_UNITS

typedef struct {
    PyObject_HEAD
    long long sign;
    long long *prices; /* hash slots: a price, EMPTY or TOMB */
    long long *sizes;
    Py_ssize_t cap;    /* a power of two */
    Py_ssize_t len;    /* live levels */
    Py_ssize_t used;   /* live levels + tombstones */
    long long *keys;   /* the sorted top region */
    Py_ssize_t nkeys, keys_cap;
    int has_floor;
    long long floor;
    Py_ssize_t least, keep, most;
} Side;

static Py_ssize_t
slot_of(const Side *self, long long price)
{
    return (Py_ssize_t)(((unsigned long long)price * 0x9E3779B97F4A7C15ULL)
                        >> 32) & (self->cap - 1);
}

/* Index of ``price`` in the table, or -1. */
static Py_ssize_t
find(const Side *self, long long price)
{
    Py_ssize_t mask = self->cap - 1;
    for (Py_ssize_t i = slot_of(self, price);; i = (i + 1) & mask) {
        long long p = self->prices[i];
        if (p == price) {
            return i;
        }
        if (p == EMPTY) {
            return -1;
        }
    }
}

static int
rehash(Side *self, Py_ssize_t cap)
{
    long long *prices = PyMem_Malloc((size_t)cap * sizeof(long long));
    long long *sizes = PyMem_Malloc((size_t)cap * sizeof(long long));
    if (prices == NULL || sizes == NULL) {
        PyMem_Free(prices);
        PyMem_Free(sizes);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < cap; i++) {
        prices[i] = EMPTY;
    }
    long long *old_prices = self->prices, *old_sizes = self->sizes;
    Py_ssize_t old_cap = self->cap;
    self->prices = prices;
    self->sizes = sizes;
    self->cap = cap;
    self->used = self->len;
    for (Py_ssize_t i = 0; i < old_cap; i++) {
        long long p = old_prices[i];
        if (p != EMPTY && p != TOMB) {
            Py_ssize_t j = slot_of(self, p);
            while (prices[j] != EMPTY) {
                j = (j + 1) & (cap - 1);
            }
            prices[j] = p;
            sizes[j] = old_sizes[i];
        }
    }
    PyMem_Free(old_prices);
    PyMem_Free(old_sizes);
    return 0;
}

/* Store size > 0 at price; sets *added when the level is new. */
static int
put(Side *self, long long price, long long size, int *added)
{
    Py_ssize_t mask = self->cap - 1, tomb = -1, i = slot_of(self, price);
    for (;; i = (i + 1) & mask) {
        long long p = self->prices[i];
        if (p == price) {
            self->sizes[i] = size;
            *added = 0;
            return 0;
        }
        if (p == TOMB && tomb < 0) {
            tomb = i;
        }
        else if (p == EMPTY) {
            break;
        }
    }
    if (tomb >= 0) {
        i = tomb;
    }
    else {
        self->used++;
    }
    self->prices[i] = price;
    self->sizes[i] = size;
    self->len++;
    *added = 1;
    if (self->used * 4 >= self->cap * 3) {  /* at most 3/4 full, tombstones included */
        Py_ssize_t cap = self->cap;
        while (self->len * 2 >= cap) {
            cap *= 2;
        }
        return rehash(self, cap);
    }
    return 0;
}

/* Drop price; 1 when it was there. */
static int
drop(Side *self, long long price)
{
    Py_ssize_t i = find(self, price);
    if (i < 0) {
        return 0;
    }
    self->prices[i] = TOMB;
    self->len--;
    return 1;
}

/* First index in the region whose key is >= key. */
static Py_ssize_t
region_at(const Side *self, long long key)
{
    Py_ssize_t lo = 0, hi = self->nkeys;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (self->keys[mid] < key) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo;
}

static int
region_reserve(Side *self, Py_ssize_t n)
{
    if (n <= self->keys_cap) {
        return 0;
    }
    Py_ssize_t cap = self->keys_cap ? self->keys_cap : 16;
    while (cap < n) {
        cap *= 2;
    }
    long long *keys = PyMem_Realloc(self->keys, (size_t)cap * sizeof(long long));
    if (keys == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->keys = keys;
    self->keys_cap = cap;
    return 0;
}

static int
compare_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* Put the k largest of a[0..n) into a[n-k..n) (any order): quickselect, O(n) expected. */
static void
select_largest(long long *a, Py_ssize_t n, Py_ssize_t k)
{
    Py_ssize_t lo = 0, hi = n - 1, target = n - k;
    while (lo < hi) {
        long long x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi];
        long long pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        Py_ssize_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) {
                i++;
            }
            while (a[j] > pivot) {
                j--;
            }
            if (i <= j) {
                long long t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (target <= j) {
            hi = j;
        }
        else if (target >= i) {
            lo = i;
        }
        else {
            return;
        }
    }
}

/* Every key (price x sign) of the side, in a new PyMem buffer; NULL on no memory. */
static long long *
all_keys(const Side *self)
{
    long long *out = PyMem_Malloc((size_t)(self->len > 0 ? self->len : 1) * sizeof(long long));
    if (out == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    Py_ssize_t n = 0;
    for (Py_ssize_t i = 0; i < self->cap; i++) {
        long long p = self->prices[i];
        if (p != EMPTY && p != TOMB) {
            out[n++] = p * self->sign;
        }
    }
    return out;
}

/* Rebuild the region from the table: its best ``keep`` levels (all, if fewer). */
static int
refill(Side *self)
{
    long long *keys = all_keys(self);
    if (keys == NULL) {
        return -1;
    }
    Py_ssize_t n = self->len, k = n < self->keep ? n : self->keep;
    if (k > 0 && k < n) {
        select_largest(keys, n, k);
    }
    qsort(keys + (n - k), (size_t)k, sizeof(long long), compare_ll);
    if (region_reserve(self, k) < 0) {
        PyMem_Free(keys);
        return -1;
    }
    memcpy(self->keys, keys + (n - k), (size_t)k * sizeof(long long));
    self->nkeys = k;
    self->has_floor = n > self->keep;
    self->floor = self->has_floor ? self->keys[0] : 0;
    PyMem_Free(keys);
    return 0;
}

/* A price or size as a long long within the book's range; -1 with an exception when not. */
static int
book_int(PyObject *value, long long *out, const char *what)
{
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "book %s must be an int, not %.100s", what,
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (x == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow || x > LIMIT || x < -LIMIT) {
        PyErr_Format(PyExc_OverflowError, "book %s beyond 2**62", what);
        return -1;
    }
    *out = x;
    return 0;
}

/* One change: absolute size at price, 0 deletes. */
static int
change(Side *self, long long price, long long size)
{
    long long key = price * self->sign;
    if (self->has_floor && key < self->floor) {  /* below the region: the table only */
        int added;
        return size ? put(self, price, size, &added) : (drop(self, price), 0);
    }
    if (size) {
        int added;
        if (put(self, price, size, &added) < 0) {
            return -1;
        }
        if (added) {
            if (region_reserve(self, self->nkeys + 1) < 0) {
                return -1;
            }
            Py_ssize_t at = region_at(self, key);
            memmove(self->keys + at + 1, self->keys + at,
                    (size_t)(self->nkeys - at) * sizeof(long long));
            self->keys[at] = key;
            self->nkeys++;
        }
        return 0;
    }
    if (drop(self, price)) {
        Py_ssize_t at = region_at(self, key);
        memmove(self->keys + at, self->keys + at + 1,
                (size_t)(self->nkeys - at - 1) * sizeof(long long));
        self->nkeys--;
    }
    return 0;
}

/* After a batch of changes: trim a region grown beyond ``most``, refill one fallen below
 * ``least`` while deeper levels exist. */
static int
settle(Side *self)
{
    if (self->nkeys > self->most) {
        Py_ssize_t cut = self->nkeys - self->keep;
        memmove(self->keys, self->keys + cut, (size_t)self->keep * sizeof(long long));
        self->nkeys = self->keep;
        self->has_floor = 1;
        self->floor = self->keys[0];
        return 0;
    }
    if (self->nkeys < self->least && self->has_floor) {
        return refill(self);
    }
    return 0;
}

/* A (price, size) pair, size >= 0; -1 with an exception when it is not one. */
static int
read_pair(PyObject *pair, long long *price, long long *size)
{
    int rc;
    if (PyTuple_CheckExact(pair) && PyTuple_GET_SIZE(pair) == 2) {
        rc = book_int(PyTuple_GET_ITEM(pair, 0), price, "price") < 0
            || book_int(PyTuple_GET_ITEM(pair, 1), size, "size") < 0 ? -1 : 0;
    }
    else {
        PyObject *fast = PySequence_Fast(pair, "a book change must be a (price, size) pair");
        if (fast == NULL) {
            return -1;
        }
        if (PySequence_Fast_GET_SIZE(fast) != 2) {
            PyErr_SetString(PyExc_ValueError, "a book change must be a (price, size) pair");
            Py_DECREF(fast);
            return -1;
        }
        rc = book_int(PySequence_Fast_GET_ITEM(fast, 0), price, "price") < 0
            || book_int(PySequence_Fast_GET_ITEM(fast, 1), size, "size") < 0 ? -1 : 0;
        Py_DECREF(fast);
    }
    if (rc == 0 && *size < 0) {
        PyErr_SetString(PyExc_ValueError, "book size must be >= 0");
        rc = -1;
    }
    return rc;
}

static int
apply_pairs(Side *self, PyObject *changes)
{
    if (Py_TYPE(changes) == &LevelsType) {  /* a scanned diff: no Python object per level */
        const Levels *levels = (const Levels *)changes;
        for (Py_ssize_t i = 0; i < Py_SIZE(levels); i++) {
            long long price = levels->v[2 * i], size = levels->v[2 * i + 1];
            if (price > LIMIT || price < -LIMIT || size > LIMIT || size < 0) {
                PyErr_SetString(PyExc_OverflowError, "book level beyond 2**62");
                settle(self);
                return -1;
            }
            if (change(self, price, size) < 0) {
                settle(self);
                return -1;
            }
        }
        return settle(self);
    }
    PyObject *seq = PySequence_Fast(changes, "book changes must be a sequence of (price, size)");
    if (seq == NULL) {
        return -1;
    }
    int rc = 0;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq) && rc == 0; i++) {
        long long price, size;
        rc = read_pair(PySequence_Fast_GET_ITEM(seq, i), &price, &size);
        if (rc == 0) {
            rc = change(self, price, size);
        }
    }
    Py_DECREF(seq);
    int settled = settle(self);  /* what was applied before an error stays consistent */
    return rc < 0 ? -1 : settled;
}

static void
reset(Side *self)
{
    for (Py_ssize_t i = 0; i < self->cap; i++) {
        self->prices[i] = EMPTY;
    }
    self->len = self->used = 0;
    self->nkeys = 0;
    self->has_floor = 0;
}

static PyObject *
Side_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"sign", "least", "keep", "most", NULL};
    long long sign;
    Py_ssize_t least = 32, keep = 128, most = 256;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "L|nnn:BookSide", names, &sign, &least,
                                     &keep, &most)) {
        return NULL;
    }
    if (sign != 1 && sign != -1) {
        PyErr_SetString(PyExc_ValueError, "sign must be 1 (bids) or -1 (asks)");
        return NULL;
    }
    if (!(1 <= least && least <= keep && keep < most)) {
        PyErr_Format(PyExc_ValueError,
                     "top region sizes need 1 <= least <= keep < most, got %zd, %zd, %zd",
                     least, keep, most);
        return NULL;
    }
    Side *self = (Side *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->sign = sign;
    self->least = least;
    self->keep = keep;
    self->most = most;
    self->cap = 0;
    /* a head start only: every insertion reserves its own room (most may be any size) */
    if (rehash(self, 64) < 0 || region_reserve(self, (most < 1024 ? most : 1024) + 1) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
Side_dealloc(Side *self)
{
    PyMem_Free(self->prices);
    PyMem_Free(self->sizes);
    PyMem_Free(self->keys);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Side_update(Side *self, PyObject *changes)
{
    if (apply_pairs(self, changes) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Side_load(Side *self, PyObject *levels)
{
    reset(self);
    /* as the Python twin: zero sizes are skipped (they delete nothing), the last size of a
     * repeated price is kept; the region is built once at the end */
    if (Py_TYPE(levels) == &LevelsType) {  /* a scanned snapshot: no Python object per level */
        const Levels *packed = (const Levels *)levels;
        Py_ssize_t cap = self->cap;
        while (Py_SIZE(packed) * 2 >= cap) {  /* the size put() would grow to, in one step */
            cap *= 2;
        }
        if (cap != self->cap && rehash(self, cap) < 0) {
            return NULL;
        }
        for (Py_ssize_t i = 0; i < Py_SIZE(packed); i++) {
            long long price = packed->v[2 * i], size = packed->v[2 * i + 1];
            int added;
            if (price > LIMIT || price < -LIMIT || size > LIMIT || size < 0) {
                PyErr_SetString(PyExc_OverflowError, "book level beyond 2**62");
                reset(self);
                return NULL;
            }
            if (size && put(self, price, size, &added) < 0) {
                reset(self);
                return NULL;
            }
        }
        if (refill(self) < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *seq = PySequence_Fast(levels, "book levels must be a sequence of (price, size)");
    if (seq == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        long long price, size;
        int added;
        if (read_pair(PySequence_Fast_GET_ITEM(seq, i), &price, &size) < 0
            || (size && put(self, price, size, &added) < 0)) {
            Py_DECREF(seq);
            reset(self);
            return NULL;
        }
    }
    Py_DECREF(seq);
    if (refill(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Side_set(Side *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long price, size;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "set() takes a price and a size");
        return NULL;
    }
    if (book_int(args[0], &price, "price") < 0 || book_int(args[1], &size, "size") < 0) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "book size must be >= 0");
        return NULL;
    }
    if (change(self, price, size) < 0 || settle(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Side_clear(Side *self, PyObject *unused)
{
    reset(self);
    Py_RETURN_NONE;
}

static PyObject *
Side_best(Side *self, PyObject *unused)
{
    if (self->nkeys == 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLongLong(self->keys[self->nkeys - 1] * self->sign);
}

static PyObject *
level_tuple(const Side *self, long long price)
{
    Py_ssize_t i = find(self, price);
    return Py_BuildValue("(LL)", price, i < 0 ? 0 : self->sizes[i]);
}

static PyObject *
Side_best_level(Side *self, PyObject *unused)
{
    if (self->nkeys == 0) {
        Py_RETURN_NONE;
    }
    return level_tuple(self, self->keys[self->nkeys - 1] * self->sign);
}

static PyObject *
Side_size_at(Side *self, PyObject *price_obj)
{
    long long price;
    if (!PyLong_Check(price_obj)) {
        /* as a dict lookup: a number equal to an int (7.0, Decimal(7)) finds that int */
        PyObject *whole = PyNumber_Long(price_obj);
        int equal = whole == NULL ? 0 : PyObject_RichCompareBool(whole, price_obj, Py_EQ);
        PyErr_Clear();  /* not a number, NaN, infinity: no such level */
        PyObject *size = equal > 0 ? Side_size_at(self, whole) : PyLong_FromLong(0);
        Py_XDECREF(whole);
        return size;
    }
    int overflow;
    price = PyLong_AsLongLongAndOverflow(price_obj, &overflow);
    if (price == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow || price > LIMIT || price < -LIMIT) {
        return PyLong_FromLong(0);
    }
    Py_ssize_t i = find(self, price);
    return PyLong_FromLongLong(i < 0 ? 0 : self->sizes[i]);
}

/* The best ``n`` keys (an int; below 0 is 0), best first, into a new buffer; *count gets
 * how many. NULL with an exception on error. */
static long long *
best_first(const Side *self, PyObject *n_obj, Py_ssize_t *count)
{
    Py_ssize_t n = PyNumber_AsSsize_t(n_obj, NULL);  /* clamped, as slicing a list is */
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 0) {
        n = 0;
    }
    if (n <= self->nkeys || !self->has_floor) {
        Py_ssize_t k = n < self->nkeys ? n : self->nkeys;
        long long *out = PyMem_Malloc((size_t)(k > 0 ? k : 1) * sizeof(long long));
        if (out == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        for (Py_ssize_t j = 0; j < k; j++) {
            out[j] = self->keys[self->nkeys - 1 - j];
        }
        *count = k;
        return out;
    }
    long long *keys = all_keys(self);  /* deeper than the region: sort the whole side */
    if (keys == NULL) {
        return NULL;
    }
    qsort(keys, (size_t)self->len, sizeof(long long), compare_ll);
    Py_ssize_t k = n < self->len ? n : self->len;
    long long *out = PyMem_Malloc((size_t)(k > 0 ? k : 1) * sizeof(long long));
    if (out == NULL) {
        PyMem_Free(keys);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        out[j] = keys[self->len - 1 - j];
    }
    PyMem_Free(keys);
    *count = k;
    return out;
}

static PyObject *
Side_top(Side *self, PyObject *n_obj)
{
    Py_ssize_t k;
    long long *keys = best_first(self, n_obj, &k);
    if (keys == NULL) {
        return NULL;
    }
    PyObject *out = PyList_New(k);
    for (Py_ssize_t j = 0; out != NULL && j < k; j++) {
        PyObject *level = level_tuple(self, keys[j] * self->sign);
        if (level == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, j, level);
    }
    PyMem_Free(keys);
    return out;
}

static PyObject *
Side_weighted_size(Side *self, PyObject *n_obj)
{
    Py_ssize_t k;
    long long *keys = best_first(self, n_obj, &k);
    if (keys == NULL) {
        return NULL;
    }
    double total = 0.0;
    for (Py_ssize_t j = 0; j < k; j++) {
        long long size = self->sizes[find(self, keys[j] * self->sign)];
        if (size <= ((long long)1 << 53)) {  /* exact as a double: one rounding, as Python's */
            total += (double)size / (double)(j + 1);
            continue;
        }
        /* beyond 2**53 lots, int / int as Python rounds it (the size itself is not exact) */
        PyObject *num = PyLong_FromLongLong(size), *den = PyLong_FromSsize_t(j + 1);
        PyObject *q = num && den ? PyNumber_TrueDivide(num, den) : NULL;
        Py_XDECREF(num);
        Py_XDECREF(den);
        if (q == NULL) {
            PyMem_Free(keys);
            return NULL;
        }
        total += PyFloat_AS_DOUBLE(q);
        Py_DECREF(q);
    }
    PyMem_Free(keys);
    return PyFloat_FromDouble(total);
}

static PyObject *
Side_check(Side *self, PyObject *unused)
{
    long long *keys = all_keys(self);
    if (keys == NULL) {
        return NULL;
    }
    Py_ssize_t n = 0, live = 0;
    for (Py_ssize_t i = 0; i < self->cap; i++) {
        long long p = self->prices[i];
        if (p != EMPTY && p != TOMB) {
            live++;
            if (self->sizes[i] <= 0 || find(self, p) != i) {
                PyMem_Free(keys);
                PyErr_SetString(PyExc_AssertionError, "a level of size <= 0 or out of place");
                return NULL;
            }
        }
    }
    qsort(keys, (size_t)self->len, sizeof(long long), compare_ll);
    for (Py_ssize_t i = 0; i < self->len; i++) {
        if (!self->has_floor || keys[i] >= self->floor) {
            keys[n++] = keys[i];
        }
    }
    int same = live == self->len && n == self->nkeys
        && (n == 0 || memcmp(keys, self->keys, (size_t)n * sizeof(long long)) == 0);
    PyMem_Free(keys);
    if (!same) {
        PyErr_SetString(PyExc_AssertionError,
                        "the sorted region is not the levels at or above its floor");
        return NULL;
    }
    if (self->has_floor && self->nkeys < self->least) {
        PyErr_Format(PyExc_AssertionError, "region of %zd levels, below %zd", self->nkeys,
                     self->least);
        return NULL;
    }
    if (self->nkeys > self->most) {
        PyErr_Format(PyExc_AssertionError, "region of %zd levels, beyond %zd", self->nkeys,
                     self->most);
        return NULL;
    }
    Py_RETURN_NONE;
}

static Py_ssize_t
Side_len(Side *self)
{
    return self->len;
}

static PyObject *
Side_get_levels(Side *self, void *closure)
{
    PyObject *out = PyDict_New();
    for (Py_ssize_t i = 0; out != NULL && i < self->cap; i++) {
        long long p = self->prices[i];
        if (p != EMPTY && p != TOMB) {
            PyObject *price = PyLong_FromLongLong(p), *size = PyLong_FromLongLong(self->sizes[i]);
            if (price == NULL || size == NULL || PyDict_SetItem(out, price, size) < 0) {
                Py_CLEAR(out);
            }
            Py_XDECREF(price);
            Py_XDECREF(size);
        }
    }
    return out;
}

static PyObject *
Side_get_keys(Side *self, void *closure)
{
    PyObject *out = PyList_New(self->nkeys);
    for (Py_ssize_t j = 0; out != NULL && j < self->nkeys; j++) {
        PyObject *key = PyLong_FromLongLong(self->keys[j]);
        if (key == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, j, key);
    }
    return out;
}

static PyObject *
Side_get_floor(Side *self, void *closure)
{
    if (!self->has_floor) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLongLong(self->floor);
}

static PyObject *
Side_get_sign(Side *self, void *closure)
{
    return PyLong_FromLongLong(self->sign);
}

static PyObject *
Side_get_least(Side *self, void *closure)
{
    return PyLong_FromSsize_t(self->least);
}

static PyMethodDef Side_methods[] = {
    {"update", (PyCFunction)Side_update, METH_O,
     "Apply absolute (price ticks, size lots) changes; size 0 deletes."},
    {"load", (PyCFunction)Side_load, METH_O, "Replace the side with levels; zero sizes skipped."},
    {"set", (PyCFunction)(void (*)(void))Side_set, METH_FASTCALL,
     "Set the absolute size (lots) at price (ticks); 0 deletes, absent is fine."},
    {"clear", (PyCFunction)Side_clear, METH_NOARGS, "Remove every level."},
    {"best", (PyCFunction)Side_best, METH_NOARGS, "Best price in ticks, or None."},
    {"best_level", (PyCFunction)Side_best_level, METH_NOARGS, "(price, size) at the best."},
    {"size_at", (PyCFunction)Side_size_at, METH_O, "Size in lots at price (0 when none)."},
    {"top", (PyCFunction)Side_top, METH_O, "Up to n levels, best first."},
    {"weighted_size", (PyCFunction)Side_weighted_size, METH_O,
     "Sum over the best n levels of size / (i + 1), i = 0 at the best level."},
    {"check", (PyCFunction)Side_check, METH_NOARGS,
     "Raise AssertionError unless the side's invariants hold."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Side_getset[] = {
    {"levels", (getter)Side_get_levels, NULL, "Every level as a new dict price -> size.", NULL},
    {"_keys", (getter)Side_get_keys, NULL, "The sorted top region (price x sign).", NULL},
    {"_floor", (getter)Side_get_floor, NULL, "The region's floor, None when it has all.", NULL},
    {"sign", (getter)Side_get_sign, NULL, "+1 for bids, -1 for asks.", NULL},
    {"least", (getter)Side_get_least, NULL,
     "Levels the sorted region holds at least (when the side has them).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Side_as_sequence = {
    .sq_length = (lenfunc)Side_len,
};

static PyTypeObject SideType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mmdaemon._speedups.BookSide",
    .tp_basicsize = sizeof(Side),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "BookSide(sign, least=32, keep=128, most=256): one side of the book, compiled "
              "(see mmdaemon/book.py, whose BookSide is the reference).",
    .tp_new = Side_new,
    .tp_dealloc = (destructor)Side_dealloc,
    .tp_methods = Side_methods,
    .tp_getset = Side_getset,
    .tp_as_sequence = &Side_as_sequence,
};

static PyMethodDef methods[] = {
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "mmdaemon._speedups",
    "Compiled hot loops of the codec and the book; see mmdaemon/speedups.py.", -1, methods,
};

static PyObject *
intern(const char *text)
{
    return PyUnicode_InternFromString(text);
}

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if ((KEY_stream = intern("stream")) == NULL || (KEY_data = intern("data")) == NULL
        || (NS_PER_MS = PyLong_FromLong(1000000)) == NULL
        || (ZERO = PyLong_FromLong(0)) == NULL) {
        return NULL;
    }
    if (PyType_Ready(&DecoderType) < 0 || PyType_Ready(&SideType) < 0
        || PyType_Ready(&LevelsType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Decoder", (PyObject *)&DecoderType) < 0
        || PyModule_AddObjectRef(m, "BookSide", (PyObject *)&SideType) < 0
        || PyModule_AddObjectRef(m, "Levels", (PyObject *)&LevelsType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
