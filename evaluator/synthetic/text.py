"""Referring text for the objects of a scene, unique within the scene.

Each object has facts (category, colour, texture, transparency, size class,
position, depth relations, depth rank). A description is a list of clauses about
these facts. It starts with the colour and the category and gains clauses, in a
fixed order, while more than one object of the scene fits it and the next clause
rules some of them out. A texture other than solid and semi-transparency are
always named, because a viewer notices them first. The depth rank ("the second
object from the front") is unique, so every description fits one object alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluator.synthetic.scene import COVER_ALPHA, Scene
from evaluator.synthetic.textures import BACKGROUNDS, TEXTURES

# Shares of the image area below and above which an object is "small" or "large".
SMALL_AREA = 0.035
LARGE_AREA = 0.10
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "centre", "right")
ORDINALS = ("front-most", "second", "third", "fourth", "fifth", "sixth")

Clause = tuple[str, object]


@dataclass(frozen=True)
class ObjectFacts:
    """Facts a viewer can tell about one object. Depth 0 is the front-most object."""

    category: str
    colour: str | None
    texture: str | None
    transparent: bool
    size_class: str | None
    position: str
    depth: int
    hides: frozenset[int]  # indices of the objects whose support this object covers


def _position(visible: np.ndarray) -> str:
    """Name the 3 x 3 grid cell of the centre of the visible region's bounding box."""
    rows = np.flatnonzero(visible.any(axis=1))
    cols = np.flatnonzero(visible.any(axis=0))
    height, width = visible.shape
    row = min(2, int(3 * (rows[0] + rows[-1] + 1) / 2 / height))
    col = min(2, int(3 * (cols[0] + cols[-1] + 1) / 2 / width))
    if (row, col) == (1, 1):
        return "in the centre"
    if row == 1:
        return f"on the {COLUMNS[col]}"
    if col == 1:
        return f"at the {ROWS[row]}"
    return f"at the {ROWS[row]} {COLUMNS[col]}"


def scene_facts(scene: Scene) -> list[ObjectFacts]:
    """Collect the facts of each object, in the order of `scene.objects` (back to front)."""
    area = scene.image.shape[0] * scene.image.shape[1]
    count = len(scene.objects)
    facts = []
    for index, obj in enumerate(scene.objects):
        share = obj.support.sum() / area
        size_class = None
        if share < SMALL_AREA:
            size_class = "small"
        elif share > LARGE_AREA:
            size_class = "large"
        covers = obj.layer[:, :, 3] >= COVER_ALPHA
        hides = frozenset(
            behind for behind in range(index) if (scene.objects[behind].support & covers).any()
        )
        facts.append(
            ObjectFacts(
                category=obj.spec.category,
                colour=obj.spec.colour,
                texture=obj.spec.texture,
                transparent=obj.spec.opacity < 1.0,
                size_class=size_class,
                position=_position(obj.visible),
                depth=count - 1 - index,
                hides=hides,
            )
        )
    return facts


def _noun_key(facts: ObjectFacts) -> tuple[str, str | None]:
    return (facts.category, facts.colour)


def fits(clauses: list[Clause], candidate: int, facts: list[ObjectFacts]) -> bool:
    """Check whether object `candidate` fits every clause of a description."""
    obj = facts[candidate]
    for name, value in clauses:
        if name == "in front of":
            if not any(_noun_key(facts[other]) == value for other in obj.hides):
                return False
        elif name == "behind":
            if not any(_noun_key(other) == value and candidate in other.hides for other in facts):
                return False
        elif getattr(obj, name) != value:
            return False
    return True


def matching_objects(clauses: list[Clause], facts: list[ObjectFacts]) -> list[int]:
    return [index for index in range(len(facts)) if fits(clauses, index, facts)]


def _optional_clauses(index: int, facts: list[ObjectFacts]) -> list[Clause]:
    obj = facts[index]
    nouns = [_noun_key(other) for other in facts]
    clauses: list[Clause] = [("texture", obj.texture), ("transparent", obj.transparent)]
    if obj.size_class is not None:
        clauses.append(("size_class", obj.size_class))
    clauses.append(("position", obj.position))
    # A relation names the other object by colour and category, so only an object
    # that those two identify can serve.
    for other in sorted(obj.hides):
        if nouns.count(nouns[other]) == 1:
            clauses.append(("in front of", nouns[other]))
    for other, other_facts in enumerate(facts):
        if index in other_facts.hides and nouns.count(nouns[other]) == 1:
            clauses.append(("behind", nouns[other]))
    clauses.append(("depth", obj.depth))
    return clauses


def describe(index: int, facts: list[ObjectFacts]) -> list[Clause]:
    """Choose the clauses that single out object `index` among `facts`."""
    obj = facts[index]
    clauses: list[Clause] = [("category", obj.category), ("colour", obj.colour)]
    if obj.texture not in (None, "solid"):
        clauses.append(("texture", obj.texture))
    if obj.transparent:
        clauses.append(("transparent", True))
    for clause in _optional_clauses(index, facts):
        if clause in clauses:
            continue
        matches = len(matching_objects(clauses, facts))
        if matches == 1:
            break
        if len(matching_objects(clauses + [clause], facts)) < matches:
            clauses.append(clause)
    return clauses


def _noun_phrase(key: tuple[str, str | None]) -> str:
    category, colour = key
    return f"the {colour} {category}" if colour else f"the {category}"


def render(clauses: list[Clause]) -> str:
    """Write clauses as English: "the small semi-transparent red striped star at the top left"."""
    values = dict(clauses)
    words = ["the"]
    if values.get("size_class"):
        words.append(values["size_class"])
    if "transparent" in values:
        words.append("semi-transparent" if values["transparent"] else "opaque")
    if values.get("colour"):
        words.append(values["colour"])
    adjective = TEXTURES.get(values.get("texture") or "", "")
    if "texture" in values:
        words.append(adjective or "plain")
    words.append(values["category"])
    if "position" in values:
        words.append(values["position"])
    for name, value in clauses:
        if name in ("in front of", "behind"):
            words.append(f"{name} {_noun_phrase(value)}")
    if "depth" in values:
        depth = values["depth"]
        rank = "front-most object" if depth == 0 else f"{ORDINALS[depth]} object from the front"
        words.append(f"that is the {rank}")
    return " ".join(words)


def describe_scene(scene: Scene) -> list[str]:
    """Referring text for each object of the scene, in the order of `scene.objects`."""
    facts = scene_facts(scene)
    return [render(describe(index, facts)) for index in range(len(facts))]


def background_text(scene: Scene) -> str:
    return f"the {BACKGROUNDS[scene.background_name]} background behind the objects"
