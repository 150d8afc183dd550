"""Data sources as objects (`DataSource`), registered in `kerastp.registry.SOURCES`.

    >>> source = get_source("procedural", seed=0)  # doctest: +SKIP
    >>> source = source_from_config(json.load(open("runs/x/config.json")))  # doctest: +SKIP
"""

from kerastp import registry
from kerastp.data.sources.base import DataSource


def get_source(name, **kwargs):
    """The registered source `name` built with `kwargs` (a `DataSource` is returned as is)."""
    if isinstance(name, DataSource):
        return name
    return registry.get_source_class(name)(**kwargs)


def source_from_config(config, data=None):
    """The source a run configuration describes (a `TrainConfig` dict or a run's
    config.json); `data` names another source to build from the same settings."""
    name = data or config.get("data") or "procedural"
    return registry.get_source_class(name).from_config(config)


__all__ = ["DataSource", "get_source", "source_from_config"]
