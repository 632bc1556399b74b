"""Feed sources (I/O shells): recordings and their paced replay; later the websocket client."""
