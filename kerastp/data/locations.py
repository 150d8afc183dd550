"""Where data live: an explicit path, else an environment variable, else default places.

Every data location in `kerastp.data` is found the same way (`find_location`):

1. the explicit argument (e.g. `path=`), when given;
2. the environment variable (e.g. `KERASTP_MNIST`), when set and not empty;
3. the first default candidate that holds the data.

An explicit argument or environment variable that points at nothing usable raises at once,
naming the argument or the variable; it never falls through to the defaults. When nothing is
found, `not_found_message` lists every place looked at. This module imports nothing beyond
the standard library.
"""

import os
import pathlib

__all__ = ["find_location", "keras_home", "not_found_message", "resolve_location"]


def _explicit(value, origin, recognise, expected):
    path = pathlib.Path(value).expanduser()
    found = recognise(path)
    if found is None:
        if not path.exists():
            raise FileNotFoundError(f"{origin}: '{path}' does not exist.")
        raise FileNotFoundError(f"{origin}: '{path}' is not {expected}.")
    return found


def _any_path(path):
    return path


def find_location(path, *, argument, env_var, candidates, recognise=None, expected=""):
    """The data location from `path`, else `$env_var`, else the first usable candidate.

    Args:
        path: the explicit location (str or path-like), or None.
        argument: the name of the explicit argument, for messages ("path", "cache_dir").
        env_var: the environment variable's name, or None when there is none.
        candidates: default locations (path-likes), tried in order.
        recognise: `recognise(Path)` returns the usable location (the path itself, or a
            file in it), or None when the path does not hold the data. None accepts every
            path, existing or not (a cache directory to be created).
        expected: what a usable location is, for messages ("a radar data directory ...").

    Returns:
        The location (`pathlib.Path`) from `recognise`, or None when neither `path` nor
        `env_var` is given and no candidate holds the data.

    Raises:
        FileNotFoundError: `path` or `$env_var` names a missing or unusable location; the
            message names the argument or the variable and says what was expected.
    """
    recognise = _any_path if recognise is None else recognise
    if path is not None:
        return _explicit(path, argument, recognise, expected)
    value = os.environ.get(env_var) if env_var else None
    if value:
        return _explicit(value, f"environment variable {env_var}", recognise, expected)
    for candidate in candidates:
        found = recognise(pathlib.Path(candidate).expanduser())
        if found is not None:
            return found
    return None


def not_found_message(what, *, argument, env_var, candidates, reason="", advice=""):
    """The error text for data found nowhere: every place looked at, then `advice`.

    Args:
        what: the data, as the message's subject ("Radar data", "MNIST digits").
        argument, env_var, candidates: as given to `find_location`.
        reason: appended to "<what> not found" (e.g. " locally and not downloaded (...)").
        advice: the closing text, how to provide the data.
    """
    looked = [f"  - {argument}=None (no explicit {argument} given)"]
    if env_var:
        looked.append(f"  - environment variable {env_var} (not set)")
    looked += [f"  - {pathlib.Path(c).expanduser().resolve()}" for c in candidates]
    message = f"{what} not found{reason}. Looked at:\n" + "\n".join(looked)
    return f"{message}\n{advice}" if advice else message


def resolve_location(path, *, argument, env_var, candidates, recognise, expected, what, advice):
    """`find_location`, raising `FileNotFoundError` (`not_found_message`) when nothing holds
    the data. Arguments as for those two functions."""
    found = find_location(
        path,
        argument=argument,
        env_var=env_var,
        candidates=candidates,
        recognise=recognise,
        expected=expected,
    )
    if found is None:
        raise FileNotFoundError(
            not_found_message(
                what, argument=argument, env_var=env_var, candidates=candidates, advice=advice
            )
        )
    return found


def keras_home():
    """The Keras cache root: `$KERAS_HOME`, else `~/.keras` (need not exist yet)."""
    return find_location(None, argument="KERAS_HOME", env_var="KERAS_HOME", candidates=["~/.keras"])
