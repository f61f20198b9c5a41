"""Search by photo as a service: an HTTP API and a web page over a ProductIndex.

:func:`create_app` builds the app (FastAPI) over a fitted
:class:`fusionrec.ProductIndex` and, optionally, a fitted
:class:`fusionrec.FusedClassifier`; ``fusionrec serve INDEX`` runs it with
uvicorn. It is a thin layer: photos are read, embedded, searched and
classified by the index and the classifier; the service adds the HTTP API,
batching of photos that arrive together (:class:`Batcher`), durable catalogue
changes (:class:`ChangeLog`), metrics, and the page (``static/``). Needs
``pip install 'fusionrec[serve]'``.
"""

from .app import create_app
from .batching import Batcher, Overloaded
from .change_log import Change, ChangeLog, replace_durably
from .errors import ServiceError
from .settings import ServeSettings

__all__ = [
    "Batcher",
    "Change",
    "ChangeLog",
    "Overloaded",
    "ServeSettings",
    "ServiceError",
    "create_app",
    "replace_durably",
]
