/* Optional compiled hot loops of the codec and the book (see mmdaemon/speedups.py).
 *
 * Each function here has a pure-Python twin that stays the reference: the results must be
 * identical, and anything unusual (a non-list, a string that is not plain ASCII decimal text,
 * a value that would not fit in 64 bits, a remainder) is handed back to the Python code, so
 * errors and their messages come from one place only. Nothing here keeps state.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <string.h>

/* Longest text taken here; longer goes to Python (which refuses beyond 40 characters). */
#define MAX_CHARS 40
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

/* Exact units of a plain decimal string ("61837.63000000" with unit 0.01 -> 6183763).
 * Returns 1 and sets *out, or 0 when the Python parser must decide (not an error here). */
static int
fast_units(PyObject *text, const Unit *unit, long long *out)
{
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_COMPACT_ASCII(text)) {
        return 0;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (n == 0 || n > MAX_CHARS) {
        return 0;
    }
    const unsigned char *s = PyUnicode_1BYTE_DATA(text);
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
    if (scaled % div != 0) {
        return 0;
    }
    unsigned __int128 units = scaled / div;
    if (units > (unsigned __int128)LLONG_MAX) {
        return 0;
    }
    *out = (long long)units;
    return 1;
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
static PyObject *KEY_stream, *KEY_data, *KEY_s, *KEY_b, *KEY_B, *KEY_a, *KEY_A, *KEY_u, *KEY_T, *KEY_q, *KEY_m, *KEY_p,
    *KEY_t, *NS_PER_MS, *ZERO;

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

/* A venue time in ms (an exact int) as ns; absent is 0. New reference, or NULL without an
 * exception when the field is not an exact int (the Python twin raises for it). */
static PyObject *
time_ns(PyObject *data)
{
    PyObject *ms = field(data, KEY_T);
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
    PyObject *update_id;
    if (!PyDict_CheckExact(data) || !same_symbol(self, field(data, KEY_s))
        || !plain_units(field(data, KEY_b), &self->price, &bid)
        || !plain_units(field(data, KEY_a), &self->price, &ask)
        || !plain_units(field(data, KEY_B), &self->size, &bid_size)
        || !plain_units(field(data, KEY_A), &self->size, &ask_size)
        || (update_id = field(data, KEY_u)) == NULL || !PyLong_CheckExact(update_id)) {
        return NULL;
    }
    PyObject *exch_ns = time_ns(data);
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

static PyObject *
Decoder_book_ticker(Decoder *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "book_ticker() takes 2 arguments");
        return NULL;
    }
    PyObject *events = ticker_fast(self, args[0], args[1]);
    if (events != NULL || PyErr_Occurred()) {
        return events;
    }
    return PyObject_Vectorcall(self->ticker_fallback, args, 2, NULL);
}

PyDoc_STRVAR(trade_doc,
"trade(data, recv_ns)\n--\n\n"
"A trade's data object as [Trade]; anything unusual goes to the Python twin.");

/* [Trade] of a plain trade data object; NULL as ticker_fast. */
static PyObject *
trade_fast(Decoder *self, PyObject *data, PyObject *recv_ns)
{
    long long price, size;
    PyObject *maker_is_buyer, *trade_id;
    if (!PyDict_CheckExact(data) || !same_symbol(self, field(data, KEY_s))
        || !plain_units(field(data, KEY_q), &self->size, &size) || size == 0
        || (maker_is_buyer = field(data, KEY_m)) == NULL
        || (maker_is_buyer != Py_True && maker_is_buyer != Py_False)
        || !plain_units(field(data, KEY_p), &self->price, &price)
        || (trade_id = field(data, KEY_t)) == NULL || !PyLong_CheckExact(trade_id)) {
        return NULL;
    }
    PyObject *exch_ns = time_ns(data);
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
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "trade() takes 2 arguments");
        return NULL;
    }
    PyObject *events = trade_fast(self, args[0], args[1]);
    if (events != NULL || PyErr_Occurred()) {
        return events;
    }
    return PyObject_Vectorcall(self->trade_fallback, args, 2, NULL);
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

static PyObject *
Decoder_decode(Decoder *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "decode() takes 2 arguments");
        return NULL;
    }
    PyObject *recv_ns = args[0];
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
        if (item == NULL || !PyList_CheckExact(item) || PyList_GET_SIZE(item) != 2) {
            /* an unusual shape: the Python loop decides (and raises if it must) */
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
        "ticker_fallback", "trade_fallback", "msg_fallback", "decode_fallback", NULL,
    };
    PyObject *price_int, *price_exp, *size_int, *size_exp;
    Decoder *self = (Decoder *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    PyObject *symbol, *price_parse, *size_parse, *top_cls, *trade_cls, *buy, *sell, *loads;
    PyObject *levels_fallback, *ticker_fallback, *trade_fallback, *msg_fallback;
    PyObject *decode_fallback;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "UOOOOOOOOOOOOOOOO:Decoder", names, &symbol, &price_int,
            &price_exp, &size_int, &size_exp, &price_parse, &size_parse, &top_cls, &trade_cls,
            &buy, &sell, &loads, &levels_fallback, &ticker_fallback, &trade_fallback,
            &msg_fallback, &decode_fallback)) {
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
    return 0;
}

static void
Decoder_dealloc(Decoder *self)
{
    PyObject_GC_UnTrack(self);
    Decoder_clear(self);
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
"        trade_fallback, msg_fallback, decode_fallback)\n"
"--\n\n"
"The compiled decoding of one instrument's Binance frames (pass keywords). Units\n"
"are given as DecimalScaler holds them (unit = unit_int x 10^-exp). Each method hands\n"
"whatever is not plain to its Python twin (the *_fallback callables).");

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

/* a < b for two ints of the book's keys; -1 on error. Plain C comparison when both fit in a
 * long long (always, for prices in ticks), else Python's. */
static int
less(PyObject *a, PyObject *b)
{
    int overflow_a, overflow_b;
    long long x = PyLong_AsLongLongAndOverflow(a, &overflow_a);
    long long y = PyLong_AsLongLongAndOverflow(b, &overflow_b);
    if (((x == -1 || y == -1) && PyErr_Occurred()) || overflow_a || overflow_b) {
        PyErr_Clear();
        return PyObject_RichCompareBool(a, b, Py_LT);
    }
    return x < y;
}

/* First index whose item is > key (bisect_right), or >= key when ``left``; -1 on error. */
static Py_ssize_t
bisect(PyObject *keys, PyObject *key, int left)
{
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(keys);
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (mid >= PyList_GET_SIZE(keys)) {  /* only a comparison running Python code could */
            PyErr_SetString(PyExc_RuntimeError, "book keys changed size during an update");
            return -1;
        }
        PyObject *item = PyList_GET_ITEM(keys, mid);
        Py_INCREF(item);
        int below = left ? less(item, key) : less(key, item);
        Py_DECREF(item);
        if (below < 0) {
            return -1;
        }
        if (left ? below : !below) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo;
}

/* One change of BookSide.update; 0 on success, -1 with an exception set. */
static int
apply_change(PyObject *levels, PyObject *keys, PyObject *sign, PyObject *price, PyObject *size)
{
    int nonzero = PyObject_IsTrue(size);
    if (nonzero < 0) {
        return -1;
    }
    if (nonzero) {
        int present = PyDict_Contains(levels, price);
        if (present < 0) {
            return -1;
        }
        if (!present) {
            PyObject *key = PyNumber_Multiply(price, sign);
            if (key == NULL) {
                return -1;
            }
            Py_ssize_t at = bisect(keys, key, 0);
            int rc = at < 0 ? -1 : PyList_Insert(keys, at, key);
            Py_DECREF(key);
            if (rc < 0) {
                return -1;
            }
        }
        return PyDict_SetItem(levels, price, size);
    }
    PyObject *old = PyDict_GetItemWithError(levels, price);
    if (old == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if (old == Py_None) {  /* the Python twin treats a stored None as absent; sizes never are */
        return PyDict_DelItem(levels, price);
    }
    if (PyDict_DelItem(levels, price) < 0) {
        return -1;
    }
    PyObject *key = PyNumber_Multiply(price, sign);
    if (key == NULL) {
        return -1;
    }
    Py_ssize_t at = bisect(keys, key, 1);
    Py_DECREF(key);
    if (at < 0) {
        return -1;
    }
    if (at >= PyList_GET_SIZE(keys)) {
        PyErr_SetString(PyExc_IndexError, "list assignment index out of range");
        return -1;
    }
    return PyList_SetSlice(keys, at, at + 1, NULL);
}

PyDoc_STRVAR(update_side_doc,
"update_side(levels, keys, sign, changes, fallback)\n"
"--\n\n"
"BookSide.update compiled: apply (price, size) changes to the dict ``levels`` and the sorted\n"
"list ``keys`` (price x sign); size 0 deletes. ``changes`` that are not a list of 2-tuples\n"
"go to ``fallback`` (same arguments), the Python loop. Redoing changes already applied is\n"
"harmless there: each sets an absolute size, so the last one for a price wins either way.");

static PyObject *
update_side(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "update_side() takes 5 arguments");
        return NULL;
    }
    PyObject *levels = args[0], *keys = args[1], *sign = args[2], *changes = args[3];
    if (!PyDict_CheckExact(levels) || !PyList_CheckExact(keys)) {
        PyErr_SetString(PyExc_TypeError, "update_side() takes a dict and a list");
        return NULL;
    }
    if (!PyList_CheckExact(changes)) {
        return PyObject_Vectorcall(args[4], args, 4, NULL);
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(changes); i++) {
        PyObject *change = PyList_GET_ITEM(changes, i);
        if (!PyTuple_CheckExact(change) || PyTuple_GET_SIZE(change) != 2) {
            return PyObject_Vectorcall(args[4], args, 4, NULL);
        }
        Py_INCREF(change);
        int rc = apply_change(levels, keys, sign, PyTuple_GET_ITEM(change, 0),
                              PyTuple_GET_ITEM(change, 1));
        Py_DECREF(change);
        if (rc < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"update_side", (PyCFunction)(void (*)(void))update_side, METH_FASTCALL, update_side_doc},
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
        || (KEY_s = intern("s")) == NULL || (KEY_b = intern("b")) == NULL
        || (KEY_B = intern("B")) == NULL || (KEY_a = intern("a")) == NULL
        || (KEY_A = intern("A")) == NULL || (KEY_u = intern("u")) == NULL
        || (KEY_T = intern("T")) == NULL || (KEY_q = intern("q")) == NULL
        || (KEY_m = intern("m")) == NULL || (KEY_p = intern("p")) == NULL
        || (KEY_t = intern("t")) == NULL || (NS_PER_MS = PyLong_FromLong(1000000)) == NULL
        || (ZERO = PyLong_FromLong(0)) == NULL) {
        return NULL;
    }
    if (PyType_Ready(&DecoderType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Decoder", (PyObject *)&DecoderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
