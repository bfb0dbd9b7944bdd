"""The peer-group identifier filter and pseudonym check read a normalised form: separators between
digits, lookalike letters from other scripts, invisible characters and spaced-out letters do not get a
phone number, an address, a record number or a child's name past them."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from messaging.groups import names, normalise, safety
from messaging.groups.models import Group, NameKey, Post
from portal.models import Child, DepartmentMembership, GuardianLink
from tests.conftest import ADA_NAME, World, app_client, make_user

pytestmark = pytest.mark.django_db

DEMO_CHILDREN = ["Lucas Garcia", "Sofia Garcia", "Daniel Okafor"]

ISSUE_POSTS = [
    "text me on 555 - 010 - 0201",
    "my cell is 555/010/0201",
    "call 555_010_0177",
    "Lu\u200bcas had a bad night",
    "S\u043efia",  # Cyrillic o
    "D a n i e l",
]

BENIGN_POSTS = [
    "She had a low at 3am on 2026-05-17, 2.9 mmol/L at 03:10",
    "We give 2 units at 8 and it helps",
    "Dr visits are hard on all of us",
    "I l o v e this group",
    "Thanks @ everyone, see you at the clinic.",
    "Night-time lows: what helps you?",
    "Our son was diagnosed in 2019 at age 4",
    "Lucy in the sky",  # a name close to, but not, Lucas
]

# -- generated variants ---------------------------------------------------------------------------

ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u200e", "\u202a", "\u2066"]
LETTER_LOOKALIKES = {
    "a": ["\u0430", "\u0251", "\uff41"],  # Cyrillic a, Latin alpha, fullwidth a
    "e": ["\u0435", "\uff45"],
    "o": ["\u043e", "\u03bf", "\uff4f", "0"],
    "i": ["\u0456", "\u0131", "1"],
    "l": ["\u04cf", "1", "I", "\uff4c"],
    "c": ["\u0441", "\u03f2"],
    "p": ["\u0440"],
    "s": ["\u0455"],
    "x": ["\u0445"],
    "y": ["\u0443"],
    "A": ["\u0410", "\u0391"],
    "M": ["\u041c", "\u039c"],
    "R": ["\u13a1"],
    "N": ["\u039d"],
}
DIGIT_LOOKALIKES: dict[str, list[Callable[[int], str]]] = {
    "fullwidth": [lambda d: chr(0xFF10 + d)],
    "math bold": [lambda d: chr(0x1D7CE + d)],
    "arabic-indic": [lambda d: chr(0x0660 + d)],
    "letters": [lambda d: {0: "O", 1: "l"}.get(d, str(d))],
}
DIGIT_SEPARATORS = [" ", "-", " - ", "/", "_", ".", "  ", " . ", "\u2013", "(", ")", "\u00b7"]
SPACED = [" ", ".", "-", "_", " . ", "*"]
TEMPLATES = ["{}", "text me on {} ok", "{} had a bad night", "reach me: {}!", "({})"]


def _sprinkle(text: str, rng: random.Random, rate: float) -> str:
    return "".join(char + (rng.choice(ZERO_WIDTH) if rng.random() < rate else "") for char in text)


def _lookalike_letters(text: str, rng: random.Random, rate: float = 0.5) -> str:
    out = []
    for char in text:
        options = LETTER_LOOKALIKES.get(char)
        out.append(rng.choice(options) if options and rng.random() < rate else char)
    return "".join(out)


def phone_variant(rng: random.Random) -> str:
    groups = ["555", f"{rng.randrange(100, 1000):03d}", f"{rng.randrange(0, 10000):04d}"]
    digits = "".join(groups)
    kind = rng.choice(["groups", "every digit", "lookalike digits", "zero width"])
    if kind == "every digit":
        sep = rng.choice(DIGIT_SEPARATORS)
        text = sep.join(digits)
    else:
        text = rng.choice(DIGIT_SEPARATORS).join(groups)
    if kind == "lookalike digits":
        make = rng.choice(list(DIGIT_LOOKALIKES.values()))[0]
        text = "".join(make(int(c)) if c.isdigit() and rng.random() < 0.5 else c for c in text)
    if kind == "zero width" or rng.random() < 0.3:
        text = _sprinkle(text, rng, 0.4)
    return text


def email_variant(rng: random.Random) -> str:
    local = rng.choice(["maria.garcia", "sunny.mum", "gwen", "dad2019"])
    domain = rng.choice(["example.org", "mail.example.com", "example.net"])
    kind = rng.choice(["lookalikes", "spaced", "obfuscated", "zero width", "fullwidth at"])
    at, dot = "@", "."
    if kind == "obfuscated":
        at, dot = rng.choice([(" (at) ", " (dot) "), (" [at] ", " [dot] "), (" @ ", " . ")])
    if kind == "fullwidth at":
        at = rng.choice(["\uff20", "\ufe6b"])
    if kind == "spaced":
        sep = rng.choice([" ", "  "])
        local, domain = sep.join(local), sep.join(domain)
        at = f"{sep}@{sep}"
    text = local + at + domain.replace(".", dot)
    if kind == "lookalikes":
        text = _lookalike_letters(text, rng)
    if kind == "zero width" or rng.random() < 0.3:
        text = _sprinkle(text, rng, 0.3)
    return text


def mrn_variant(rng: random.Random) -> str:
    number = f"{rng.randrange(0, 100000000):08d}"
    kind = rng.choice(["labelled", "label lookalikes", "bare digits", "spaced", "zero width"])
    if kind == "bare digits":
        text = rng.choice(DIGIT_SEPARATORS).join([number[:4], number[4:]])
    elif kind == "spaced":
        text = "MRN " + rng.choice(SPACED).join(number)
    else:
        label = rng.choice(["MRN", "MRN:", "MRN #", "medical record number", "Medical Record No."])
        text = f"{label} {number[:4]}-{number[4:]}"
        if kind == "label lookalikes":
            text = _lookalike_letters(text, rng, 0.8)
    if kind == "zero width" or rng.random() < 0.3:
        text = _sprinkle(text, rng, 0.3)
    return text


def child_name_variant(rng: random.Random) -> str:
    name = rng.choice(["Adaline", "Canaryfeather", "Adaline Canaryfeather", "ADALINE", "adaline"])
    kind = rng.choice(["lookalikes", "spaced", "zero width", "fullwidth", "mixed"])
    if kind in ("lookalikes", "mixed"):
        name = _lookalike_letters(name, rng)
    if kind in ("spaced", "mixed"):
        name = " ".join(rng.choice(SPACED).join(word) for word in name.split())
    if kind == "fullwidth":
        name = "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalpha() else c for c in name)
    if kind in ("zero width", "mixed") or rng.random() < 0.3:
        name = _sprinkle(name, rng, 0.4)
    return name


GENERATORS: dict[str, tuple[Callable[[random.Random], str], set[str]]] = {
    "phone": (phone_variant, {"phone_number", "medical_record_number"}),
    "email": (email_variant, {"email_address"}),
    "mrn": (mrn_variant, {"medical_record_number", "phone_number"}),
    "child name": (child_name_variant, {"child_name"}),
}


def _variants(per_kind: int = 60, seed: int = 20261123) -> list[tuple[str, str, set[str]]]:
    rng = random.Random(seed)  # reproducible test data
    cases = []
    for kind, (make, codes) in GENERATORS.items():
        for _ in range(per_kind):
            cases.append((kind, rng.choice(TEMPLATES).format(make(rng)), codes))
    return cases


def test_two_hundred_and_forty_generated_variants_are_all_refused() -> None:
    cases = _variants()
    assert len(cases) >= 200 and len({text for _, text, _ in cases}) >= 200
    published = []
    for kind, text, codes in cases:
        finding = safety.check(text, child_names=[ADA_NAME])
        if finding is None or not codes & set(finding.codes):
            published.append((kind, text, finding and finding.codes))
    assert published == []


@pytest.mark.parametrize("text", ISSUE_POSTS)
def test_the_reported_bypasses_are_refused(text: str) -> None:
    assert safety.check(text, child_names=DEMO_CHILDREN) is not None


@pytest.mark.parametrize("text", BENIGN_POSTS)
def test_ordinary_posts_still_pass(text: str) -> None:
    assert safety.check(text, child_names=[ADA_NAME, *DEMO_CHILDREN]) is None


# -- through the API ------------------------------------------------------------------------------


def _post(client: Client, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, data=json.dumps(body), content_type="application/json")


@pytest.fixture
def group(world: World) -> Group:
    return Group.objects.create(name="Parents", description="All of us", created_by=world.admin)


def test_posts_with_a_disguised_childs_name_or_number_are_not_published(world: World, group: Group) -> None:
    client = world.client("guardian")
    assert _post(client, f"/api/v1/groups/{group.pk}/join", {"pseudonym": "Sunny Mum"}).status_code == 201
    for text in ["Ada\u200bline had a bad night", "A d a l i n e is better", "text me on 555 - 010 - 0201"]:
        response = _post(client, f"/api/v1/groups/{group.pk}/posts", {"body": text})
        assert response.status_code == 422 and response.json()["code"] == "identifying_details", text
    assert not Post.objects.filter(group=group).exists()


def _family(world: World, email: str, name: str) -> Client:
    user = make_user(email, name)
    GuardianLink.objects.create(guardian=user, child=world.ben, relationship="mother", status="active")
    return app_client(user)


def test_pseudonyms_may_not_spell_a_real_name_or_impersonate_a_clinician(world: World, group: Group) -> None:
    priya = _family(world, "priya@example.org", "Priya Patel")
    make_user("emily@example.org", "Emily Smith")
    ortiz = make_user("ortiz@example.org", "Dr. Helen Ortiz")
    DepartmentMembership.objects.create(department=world.department, clinician=ortiz, role="doctor")
    url = f"/api/v1/groups/{group.pk}/join"
    refused = [
        "PriyaPatel",  # her own name without the space
        "Emily Smith",  # another family's real name
        "EMILY  smith",
        "Em\u0456ly Sm\u0456th",  # Cyrillic i
        "Emi\u200bly Smith",
        "Dr. Helen Ortiz",  # a clinician's name
        "Dr Ortiz",  # a title with a clinician's surname
        "Nurse H Ortiz",
        "Helen Ortiz MD",
        "Benedict Otherfamily",  # a child's real name (encrypted at rest: found through the index)
        "Adaline Canaryfeather",
        "Cleo Clinician",
    ]
    for pseudonym in refused:
        response = _post(priya, url, {"pseudonym": pseudonym})
        assert response.status_code == 422, pseudonym
        assert response.json()["code"] == "identifying_pseudonym", pseudonym
    joined = _post(priya, url, {"pseudonym": "Dr Sunshine"})  # a title, but no clinician's name
    assert joined.status_code == 201, joined.content


def test_the_name_index_follows_renames_and_never_stores_a_name(world: World) -> None:
    child = Child.objects.get(pk=world.ada.pk)
    before = set(NameKey.objects.filter(owner_id=child.pk).values_list("digest", flat=True))
    assert len(before) == 2
    assert all(ADA_NAME.split()[0].casefold() not in digest for digest in before)
    child.name = "Zara Newname"
    child.save(update_fields=["name"])
    assert names.owners_named(normalise.name_key("Zara Newname")) == [("child", child.pk)]
    assert names.owners_named(normalise.name_key(ADA_NAME)) == []  # the old name is forgotten
    user = world.stranger
    user.display_name = "Quentin Renamed"
    user.save(update_fields=["display_name"])
    assert ("user", user.pk) in names.owners_named(normalise.name_key("Quentin Renamed"))
    user.save(update_fields=["last_login"])  # other saves leave the index alone
    NameKey.objects.all().delete()
    assert names.reindex_all() >= 10
    assert names.owners_named(normalise.name_key("Zara Newname")) == [("child", child.pk)]
