"""Named templates (folder, then the shipped defaults), checks at enqueue, safety."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailq import Email, InvalidEmail
from mailq.compose.templates import DEFAULT_FOLDER, TemplateStore
from mailq.kinds import BUILTIN_KINDS
from mailq.validation import to_row


def row(store: TemplateStore | None = None, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {"to": "ann@example.com"}
    base.update(fields)
    stored = to_row(
        Email(**base),  # type: ignore[arg-type]
        default_from="news@example.com",
        templates=store or TemplateStore(),
    )
    return json.loads(stored.content)  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", list(BUILTIN_KINDS))
def test_every_built_in_kind_has_a_default_template(kind: str) -> None:
    content = row(kind=kind, context={"name": "Ann"})
    assert content["template"] == kind
    assert "{{ name }}" in content["subject"]
    assert content["text"] and content["html"]


def test_a_folder_template_comes_before_the_defaults_and_inline_fields_win(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "welcome"
    folder.mkdir()
    (folder / "subject.txt").write_text("Hi {{ first }}\n")
    (folder / "text.txt").write_text("Welcome {{ first }} from {{ city }}")
    store = TemplateStore((tmp_path, DEFAULT_FOLDER))
    content = row(store, template="welcome", context={"first": "Ann", "city": "Oslo"})
    assert content["subject"] == "Hi {{ first }}" and content["html"] is None
    content = row(
        store, template="welcome", subject="Override", context={"first": "A", "city": "B"}
    )
    assert content["subject"] == "Override"
    # Defaults still reachable for names the folder does not have.
    assert (
        row(store, template="search_engine", context={"name": "x"})["template"] == "search_engine"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"template": "welcome"}, "subject: the template uses name, which the context lacks"),
        ({"template": "../../etc/passwd"}, "template: '../../etc/passwd' is not a template name"),
        ({"template": "nope", "context": {}}, "template: no template called 'nope'"),
        (
            {"subject": "Hi {{ n }}", "text": "x", "context": {"n": "A\r\nBcc: eve@example.com"}},
            "context.n: control characters",
        ),
        ({"subject": "Hi {{ n", "text": "x"}, "template syntax error"),
    ],
)
def test_template_problems_are_refused_at_enqueue(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidEmail, match=message.replace("(", r"\(").replace(".", r"\.")):
        row(**fields)


def test_a_template_folder_without_a_subject_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "text.txt").write_text("hello")
    with pytest.raises(InvalidEmail, match=r"has no subject\.txt"):
        TemplateStore((tmp_path,)).get("bare")


def test_unsubscribe_url_is_provided_not_required() -> None:
    content = row(subject="News", text="Leave: {{ unsubscribe_url }}")
    assert content["text"] == "Leave: {{ unsubscribe_url }}"
