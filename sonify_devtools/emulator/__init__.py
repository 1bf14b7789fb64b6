"""A local server speaking the providers' protocols, for tests, demos and dry runs. Its sound is synthetic."""

from .fal_routes import StreamShape
from .server import Emulator, RequestRecord, serve_forever

__all__ = ["Emulator", "RequestRecord", "StreamShape", "serve_forever"]
