"""The public API is exactly what `__all__` says."""

from __future__ import annotations

from types import ModuleType

import taskloom


def test_all_is_sorted_complete_and_importable() -> None:
    assert taskloom.__all__ == sorted(taskloom.__all__)
    for name in taskloom.__all__:
        assert getattr(taskloom, name) is not None, name
    public = {
        name
        for name, value in vars(taskloom).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)  # submodules
    }
    assert public == set(taskloom.__all__)


def test_every_error_is_a_taskloom_error_named_error() -> None:
    from taskloom import errors

    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    for cls in classes:
        if cls is errors.TaskloomWarning:
            continue
        assert issubclass(cls, errors.TaskloomError), cls
        assert cls.__name__.endswith("Error"), cls
        assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} missing from the tree"
