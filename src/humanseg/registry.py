"""One registry for every config-facing component: models, backbones, losses, datasets,
transforms, optimizers and learning-rate schedules.

A config names a component as `{type: Name, **keys}`. `Registry.register` records a class or a
factory under a name (a decorator, so adding a component is one decorated class);
`Registry.build(spec, path)` looks the type up, checks the keys against the constructor's
signature, builds nested specs and calls the constructor. Every problem is a `SpecError` holding
the key path (`model.backbone.type`), from which the config loader names the file that set it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from functools import partial
from typing import Any, TypeVar, Union

from humanseg.errors import HumanSegError, KeyPath, SpecError

Factory = TypeVar("Factory", bound=Callable[..., Any])
# How to build a nested key's value: another registry (one spec or a list of specs), or a
# function `(value, key_path) -> built value`.
NestedBuilder = Union["Registry", Callable[[Any, KeyPath], Any]]


def check_keys(spec: Mapping[str, Any], allowed: Iterable[str], path: KeyPath) -> None:
    """Raise SpecError on the first key of `spec` outside `allowed`, listing what is allowed."""
    allowed = set(allowed)
    for key in spec:
        if key not in allowed:
            raise SpecError(
                (*path, key), f"unknown key (allowed here: {', '.join(sorted(map(str, allowed)))})"
            )


def whole_number(value: Any, path: KeyPath) -> int:
    """`value` as an int >= 1 (a config's `iters`, `batch_size`, a command-line option)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(path, f"must be a whole number >= 1, got {value!r}")
    return value


def config_keys(factory: Callable[..., Any]) -> tuple[dict[str, inspect.Parameter], bool]:
    """The keyword parameters a factory takes from a spec (those a `partial` fixes removed),
    and whether it takes any key (`**kwargs`)."""
    fixed = set(factory.keywords) if isinstance(factory, partial) else set()
    params: dict[str, inspect.Parameter] = {}
    open_ended = False
    for name, param in inspect.signature(factory).parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            open_ended = True
        elif param.kind is not inspect.Parameter.VAR_POSITIONAL and name not in fixed:
            params[name] = param
    return params, open_ended


class Registry(MutableMapping[str, Callable[..., Any]]):
    """Components of one kind by config name; `build(spec, path)` makes one from its spec.

    Args:
        kind: what the entries are, for messages (`unknown model 'X'`).
        case_insensitive: a name matches its entry in any case when no entry has it exactly
            (Paddle's optimizer names: `Adam`, `adam`, `Momentum`).
    """

    def __init__(self, kind: str, *, case_insensitive: bool = False) -> None:
        """An empty registry for components of `kind`."""
        self.kind = kind
        self.case_insensitive = case_insensitive
        self._entries: dict[str, Callable[..., Any]] = {}
        self._nested: dict[str, dict[str, NestedBuilder]] = {}

    def register(
        self,
        target: Factory | None = None,
        /,
        *,
        name: str | None = None,
        nested: Mapping[str, NestedBuilder] | None = None,
    ) -> Any:
        """Record a class or factory under `name` (default: its own `__name__`); `nested` says how
        to build the value of keys that hold specs themselves. Usable bare (`@REG.register`) or
        with options (`@REG.register(name="Dataset")`); returns the target unchanged."""
        if target is None:
            return partial(self.register, name=name, nested=nested)
        key = name or target.__name__
        if key in self._entries and self._entries[key] is not target:
            raise ValueError(f"{self.kind} {key!r} is registered twice")
        self._entries[key] = target
        self._nested[key] = dict(nested or {})
        return target

    def __getitem__(self, name: str) -> Callable[..., Any]:
        """The entry registered under `name` exactly."""
        return self._entries[name]

    def __setitem__(self, name: str, factory: Callable[..., Any]) -> None:
        """Register `factory` under `name`, replacing any entry (tests swap in small models)."""
        self._entries[name] = factory
        self._nested.setdefault(name, {})

    def __delitem__(self, name: str) -> None:
        """Forget an entry."""
        del self._entries[name]
        self._nested.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        """Registered names, in registration order."""
        return iter(self._entries)

    def __len__(self) -> int:
        """Number of entries."""
        return len(self._entries)

    def resolve(self, name: Any) -> str | None:
        """The registered name a spec's `type` means, or None when there is none."""
        if not isinstance(name, str):
            return None
        if name in self._entries:
            return name
        if self.case_insensitive:
            return next((key for key in self._entries if key.lower() == name.lower()), None)
        return None

    def check(
        self,
        spec: Any,
        path: KeyPath = (),
        *,
        nested: Mapping[str, NestedBuilder] | None = None,
        given: Iterable[str] = (),
    ) -> tuple[Callable[..., Any], dict[str, Any]]:
        """The factory a spec names and its keyword arguments, nested specs built, without
        calling it: type known, keys known, required keys present (`given` ones are supplied by
        the caller, not the config); raise SpecError at the offending key."""
        if not isinstance(spec, Mapping) or "type" not in spec:
            raise SpecError(path, f"must be a mapping with a `type` key, got {spec!r}")
        name = self.resolve(spec["type"])
        if name is None:
            raise SpecError((*path, "type"), f"unknown {self.kind} {spec['type']!r} "
                                             f"(known: {', '.join(sorted(self._entries))})")
        factory = self._entries[name]
        params, open_ended = config_keys(factory)
        given = set(given)
        kwargs = {key: value for key, value in spec.items() if key != "type"}
        if not open_ended:
            check_keys(kwargs, set(params) - given, path)
        for key, param in params.items():
            if param.default is inspect.Parameter.empty and key not in kwargs and key not in given:
                raise SpecError((*path, key), f"missing (a {name} needs it)")
        builders = {**self._nested[name], **(nested or {})}
        for key, builder in builders.items():
            if key in kwargs:
                kwargs[key] = build_nested(builder, kwargs[key], (*path, key))
        return factory, kwargs

    def build(
        self,
        spec: Any,
        path: KeyPath = (),
        *,
        nested: Mapping[str, NestedBuilder] | None = None,
        **given: Any,
    ) -> Any:
        """The component a spec describes (`given` arguments come from the caller, e.g. an
        optimizer's parameters); a bad value becomes a SpecError at `path`, and a SpecError the
        constructor raises (its path relative to the spec) is moved under `path`."""
        factory, kwargs = self.check(spec, path, nested=nested, given=given)
        try:
            return factory(**kwargs, **given)
        except SpecError as error:  # a constructor names keys relative to its own spec
            raise SpecError((*path, *error.path), error.detail) from None
        except HumanSegError as error:
            raise SpecError(path, str(error)) from None
        except (TypeError, ValueError) as error:
            message = " ".join(str(error).split())
            raise SpecError(path, f"bad {self.resolve(spec['type'])} parameters: {message}") \
                from None


def build_nested(builder: NestedBuilder, value: Any, path: KeyPath) -> Any:
    """A nested key's value built: by a registry (one spec, or each spec of a list) or a
    function `(value, path)`."""
    if not isinstance(builder, Registry):
        return builder(value, path)
    if isinstance(value, list | tuple):
        return [builder.build(item, (*path, index)) for index, item in enumerate(value)]
    if isinstance(value, Mapping):
        return builder.build(value, path)
    raise SpecError(path, f"must be a {builder.kind} spec or a list of them, got {value!r}")
