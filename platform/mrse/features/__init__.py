"""Feature computation shared by training, offline evaluation, the stream worker and serving."""
