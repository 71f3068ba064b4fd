"""The bundled demo: a three-step translation pipeline over 200 sample rows."""
