"""The one Registry: registration, lookup, key checks and nested specs, errors at key paths."""

from __future__ import annotations

from functools import partial

import pytest

from humanseg.errors import HumanSegError, SpecError
from humanseg.registry import Registry

PARTS = Registry("part")
MACHINES = Registry("machine")


@PARTS.register
class Wheel:
    """A part with one required and one optional key."""

    def __init__(self, size: int, tyre: str = "slick") -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size, self.tyre = size, tyre


@PARTS.register(name="Bell")
def make_bell(loud: bool = False) -> dict:
    """A factory registered under another name."""
    if loud is None:
        raise HumanSegError("Bell: loud must be true or false")
    return {"bell": loud}


@MACHINES.register(nested={"wheels": PARTS, "extra": PARTS})
class Bike:
    """Nested specs: a list of parts and one part."""

    def __init__(self, wheels: list, extra: object = None, owner: str = "") -> None:
        self.wheels, self.extra, self.owner = wheels, extra, owner


def test_decorator_registers_under_class_name_or_given_name() -> None:
    assert list(PARTS) == ["Wheel", "Bell"] and PARTS["Wheel"] is Wheel
    assert PARTS.build({"type": "Bell", "loud": True}) == {"bell": True}
    wheel = PARTS.build({"type": "Wheel", "size": 3})
    assert (wheel.size, wheel.tyre) == (3, "slick")


def test_registering_another_entry_under_a_taken_name_is_refused() -> None:
    with pytest.raises(ValueError, match="part 'Wheel' is registered twice"):
        PARTS.register(make_bell, name="Wheel")


def test_unknown_type_names_key_path_and_known_types() -> None:
    with pytest.raises(SpecError, match=r"^cfg\.thing\.type: unknown part 'Pedal' "
                                        r"\(known: Bell, Wheel\)$") as caught:
        PARTS.build({"type": "Pedal"}, ("cfg", "thing"))
    assert caught.value.path == ("cfg", "thing", "type")
    with pytest.raises(SpecError, match=r"^thing: must be a mapping with a `type` key"):
        PARTS.build({"size": 3}, ("thing",))


def test_bad_key_and_missing_key_are_named_by_their_path() -> None:
    with pytest.raises(SpecError) as caught:
        PARTS.build({"type": "Wheel", "size": 3, "tire": "x"}, ("parts", 2))
    assert caught.value.path == ("parts", 2, "tire")
    assert str(caught.value) == "parts[2].tire: unknown key (allowed here: size, tyre)"
    with pytest.raises(SpecError, match=r"^parts\[0\]\.size: missing \(a Wheel needs it\)$"):
        PARTS.build({"type": "Wheel"}, ("parts", 0))


def test_bad_values_become_spec_errors_at_the_spec() -> None:
    with pytest.raises(SpecError, match=r"^w: bad Wheel parameters: size must be >= 1, got 0$"):
        PARTS.build({"type": "Wheel", "size": 0}, ("w",))
    with pytest.raises(SpecError, match=r"^b: Bell: loud must be true or false$") as caught:
        PARTS.build({"type": "Bell", "loud": None}, ("b",))
    assert caught.value.path == ("b",)


def test_nested_specs_are_built_with_their_own_key_paths() -> None:
    bike = MACHINES.build({"type": "Bike", "wheels": [{"type": "Wheel", "size": 2},
                                                      {"type": "Wheel", "size": 3}],
                           "extra": {"type": "Bell"}}, ("machine",))
    assert [wheel.size for wheel in bike.wheels] == [2, 3] and bike.extra == {"bell": False}
    with pytest.raises(SpecError) as caught:
        MACHINES.build({"type": "Bike", "wheels": [{"type": "Wheel", "size": 2},
                                                   {"type": "Wheel", "sise": 3}]}, ("machine",))
    assert caught.value.path == ("machine", "wheels", 1, "sise")
    with pytest.raises(SpecError, match=r"^machine\.wheels: must be a part spec or a list"):
        MACHINES.build({"type": "Bike", "wheels": "two"}, ("machine",))


def test_a_call_can_override_how_a_nested_key_is_built() -> None:
    seen = []
    bike = MACHINES.build({"type": "Bike", "wheels": "two"}, ("m",),
                          nested={"wheels": lambda value, path: seen.append(path) or value * 2})
    assert bike.wheels == "twotwo" and seen == [("m", "wheels")]


def test_check_validates_without_building() -> None:
    factory, kwargs = MACHINES.check({"type": "Bike", "wheels": [], "owner": "ann"})
    assert factory is Bike and kwargs == {"wheels": [], "owner": "ann"}


def test_given_arguments_are_not_config_keys() -> None:
    registry = Registry("optimizer", case_insensitive=True)
    registry.register(lambda parameters, rate=0.1: (parameters, rate), name="sgd")
    assert registry.build({"type": "SGD"}, parameters=[1]) == ([1], 0.1)
    with pytest.raises(SpecError, match=r"^opt\.parameters: unknown key"):
        registry.build({"type": "sgd", "parameters": [2]}, ("opt",), parameters=[1])


def test_partial_keywords_are_fixed_not_config_keys() -> None:
    registry = Registry("backbone")
    registry.register(partial(Wheel, tyre="knobbly"), name="MountainWheel")
    assert registry.build({"type": "MountainWheel", "size": 1}).tyre == "knobbly"
    with pytest.raises(SpecError, match=r"^bb\.tyre: unknown key \(allowed here: size\)$"):
        registry.build({"type": "MountainWheel", "size": 1, "tyre": "slick"}, ("bb",))


def test_lookup_is_case_sensitive_unless_asked() -> None:
    assert PARTS.resolve("wheel") is None and PARTS.resolve(["Wheel"]) is None
    registry = Registry("optimizer", case_insensitive=True)
    registry.register(make_bell, name="adam")
    registry.register(Wheel, name="Adam")
    assert registry.resolve("ADAM") == "adam" and registry.resolve("Adam") == "Adam"


def test_entries_can_be_swapped_like_a_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PARTS, "Saddle", make_bell)
    assert PARTS.build({"type": "Saddle"}) == {"bell": False}
    monkeypatch.undo()
    assert "Saddle" not in PARTS


def test_a_constructors_own_spec_error_is_moved_under_the_spec_path() -> None:
    registry = Registry("dataset type")

    @registry.register
    def Sources(sources: list) -> list:
        for index, source in enumerate(sources):
            if "images" not in source:
                raise SpecError(("sources", index, "images"), "missing")
        return sources

    pattern = r"^train_dataset\.sources\[1\]\.images: missing$"
    with pytest.raises(SpecError, match=pattern) as caught:
        registry.build({"type": "Sources", "sources": [{"images": "a"}, {}]}, ("train_dataset",))
    assert caught.value.path == ("train_dataset", "sources", 1, "images")
