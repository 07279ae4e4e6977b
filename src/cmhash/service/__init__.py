"""The HTTP service: a JSON API and a web page over an index (``cmhash serve``)."""
from .app import ServiceConfig, create_app, warm_encoder

__all__ = ["ServiceConfig", "create_app", "warm_encoder"]
