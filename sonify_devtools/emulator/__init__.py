"""A local server speaking the providers' protocols, for tests, demos and dry runs. Its sound is synthetic."""

from .server import Emulator, RequestRecord, serve_forever

__all__ = ["Emulator", "RequestRecord", "serve_forever"]
