"""The schema is a contract: check schemas when a task loads, validate every result after decoding."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

import jsonschema
import regex
from jsonschema import _legacy_keywords
from jsonschema import exceptions as js_exc
from jsonschema.validators import validator_for
from loupe.core.schema.formats import STRICT, compiled, formats_used, with_authority
from loupe.core.schema.limits import document_problem
from referencing import Registry
from referencing.exceptions import NoSuchResource, Unresolvable
from referencing.jsonschema import DRAFT202012, specification_with


def _never_fetch(uri: str) -> Any:
    """A `$ref` outside the document is never retrieved (no HTTP, no files): it is simply not there."""
    # referencing builds its exceptions with its own attrs wrapper, so mypy does not see the `ref` field's __init__
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]


# every validator Loupe builds resolves references in this registry: the document itself (its embedded `$id`
# resources included, found by crawling it) and nothing else. Without one, jsonschema falls back to its deprecated
# RefResolver, which fetches any http(s) URL a `$ref` names.
NO_REMOTE = Registry(retrieve=_never_fetch)  # type: ignore[call-arg]  # attrs alias `retrieve` (of _retrieve) unseen by mypy


def pointer_of(path: Iterable[Any]) -> str:
    """A JSON Pointer (RFC 6901) for a jsonschema error path ("" is the whole document)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def schema_problem(schema: Any) -> tuple[str, str] | None:
    """None when `schema` is a usable JSON Schema, else (message, JSON Pointer of the bad part)."""
    if not isinstance(schema, dict | bool):
        return (f"a JSON Schema must be an object or a boolean, not {type(schema).__name__}", "")
    if isinstance(schema, bool):
        return None
    too_big = document_problem(schema)
    if too_big:
        return too_big
    cls = validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema, format_checker=FORMAT_CHECKER)  # `pattern` values checked as ECMA-262 regexes
    except js_exc.SchemaError as err:
        best = js_exc.best_match([err]) if err.context else err
        return (best.message, pointer_of(best.path))
    bad_ref = _unresolvable_ref(schema, cls)
    if bad_ref:
        return bad_ref
    try:  # unresolvable $ref shows up only when used; exercise them now
        validator = cls(schema, registry=NO_REMOTE)
        validator.is_valid(None)
        validator.is_valid({})
        validator.is_valid([])
    except js_exc._RefResolutionError as err:
        return (f"unresolvable $ref: {err}", "")
    except Unresolvable as err:
        return (
            f"$ref {err.ref!r} does not resolve inside the schema; Loupe never fetches schemas (inline it under $defs)",
            "",
        )
    except RecursionError:
        return ("the schema refers to itself without end (a $ref cycle that consumes no input)", "")
    return None


def _exact_multiple_of(validator: Any, d_b: Any, instance: Any, schema: Any) -> Iterator[js_exc.ValidationError]:
    """`multipleOf` in exact decimal arithmetic (jsonschema's float division rejects 19.99 / 0.01)."""
    if not validator.is_type(instance, "number") or not validator.is_type(d_b, "number"):
        return
    try:
        exact = Fraction(str(instance)) % Fraction(str(d_b)) == 0
    except (ValueError, ZeroDivisionError, OverflowError):
        exact = False
    if not exact:
        yield js_exc.ValidationError(f"{instance!r} is not a multiple of {d_b}")


def _format_checker() -> jsonschema.FormatChecker:
    """Every format this jsonschema checks, whatever the schema's draft, plus IRIs without a GPL parser."""
    checker = jsonschema.FormatChecker()
    checker.checkers = dict(jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers)
    for name, pattern in (("iri", _IRI), ("iri-reference", _IRI_REFERENCE)):
        if name not in checker.checkers:
            checker.checks(name)(lambda value, p=pattern: not isinstance(value, str) or bool(p.fullmatch(value)))
    for name, check in STRICT.items():  # stricter than jsonschema's (loupe.core.schema.formats)
        checker.checks(name)(check)
    for name in ("uri", "uri-reference", "iri", "iri-reference"):  # and their hosts checked as RFC 3986 says
        if name in checker.checkers:
            checker.checks(name)(with_authority(checker.checkers[name][0]))
    return checker


# RFC 3987 in outline: a scheme, then no spaces, controls or characters RFC 3986 excludes
_IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`\x00-\x1f\x7f]*")
_IRI_REFERENCE = re.compile(r"[^\s<>\"{}|\\^`\x00-\x1f\x7f]*")
FORMAT_CHECKER = _format_checker()


def format_note(schema: Any, mode: str) -> str | None:
    """What a task's load notes say of its `format` option (`mode`), when its schema names a format."""
    used = formats_used(schema)
    if not used:
        return None
    if mode == "annotation":
        names = ", ".join(used)
        return f"format is an annotation (option format: annotation): {names} not checked, while decoding or after"
    known = [f for f in used if f in FORMAT_CHECKER.checkers]
    unknown = [f for f in used if f not in FORMAT_CHECKER.checkers]
    said = [f"{', '.join(known)} checked as the standards define" if known else ""]
    said.append(f"{', '.join(unknown)} unknown, not checked" if unknown else "")
    return f"format is an assertion (option format: assertion, the default): {'; '.join(filter(None, said))}"


PATTERN_TIMEOUT_S = 0.25  # per regex search of a user's value: Python's `re` backtracks without bound


class PatternTimeout(Exception):
    """A `pattern` / `patternProperties` regex took too long on a value (catastrophic backtracking)."""

    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        self.pattern = pattern


def _search(pattern: str, text: str) -> bool:
    """Whether `pattern` matches somewhere in `text`, within PATTERN_TIMEOUT_S (the `regex` module's timeout)."""
    try:
        return compiled(pattern).search(text, timeout=PATTERN_TIMEOUT_S) is not None
    except TimeoutError:
        raise PatternTimeout(pattern) from None
    except regex.error:  # not an ECMA-262 regex (a task's are refused when it loads): nothing matches it
        return False


def _pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[js_exc.ValidationError]:
    if validator.is_type(instance, "string") and not _search(patrn, instance):
        yield js_exc.ValidationError(f"{instance!r} does not match {patrn!r}")


def _pattern_properties(
    validator: Any, pp: dict[str, Any], instance: Any, schema: Any
) -> Iterator[js_exc.ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pp.items():
        for k, v in instance.items():
            if _search(pattern, k):
                yield from validator.descend(v, subschema, path=k, schema_path=pattern)


def _additional_properties(validator: Any, ap: Any, instance: Any, schema: Any) -> Iterator[js_exc.ValidationError]:
    """jsonschema's own rule, with its patternProperties matches made through `_search`."""
    if not validator.is_type(instance, "object"):
        return
    properties, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
    extras = sorted((k for k in instance if k not in properties and not any(_search(p, k) for p in patterns)), key=str)
    if validator.is_type(ap, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], ap, path=extra)
    elif ap is False and extras:
        if patterns:
            joined = ", ".join(repr(e) for e in extras)
            listed = ", ".join(repr(p) for p in sorted(patterns))
            yield js_exc.ValidationError(
                f"{joined} {'does' if len(extras) == 1 else 'do'} not match any of the regexes: {listed}"
            )
        else:
            were = "was" if len(extras) == 1 else "were"
            yield js_exc.ValidationError(
                f"Additional properties are not allowed ({', '.join(repr(e) for e in extras)} {were} unexpected)"
            )


@functools.cache
def _exact_class(cls: type) -> Any:
    """`cls` with exact multipleOf, the legacy `dependencies` keyword, and regexes that cannot hang (built once per
    draft)."""
    keywords: dict[str, Any] = {
        "multipleOf": _exact_multiple_of,
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
    }
    if "dependencies" not in cls.VALIDATORS:  # type: ignore[attr-defined]  # 2019-09+ split it in two
        keywords["dependencies"] = _legacy_keywords.dependencies_draft4_draft6_draft7
    return jsonschema.validators.extend(cls, keywords)


def _validator(schema: Any, formats: str = "assertion") -> Any:
    cls = validator_for(schema, default=jsonschema.Draft202012Validator)
    # every format this jsonschema knows, whatever the draft: a draft-04 schema saying "iri" means an IRI; none
    # when `format` is an annotation
    checker = None if formats == "annotation" else FORMAT_CHECKER
    return _exact_class(cls)(schema, format_checker=checker, registry=NO_REMOTE)


def _subschemas(resource: Any, pointer: str) -> Iterator[tuple[Any, str]]:
    """(subresource, its JSON Pointer) for the direct subschemas of `resource`, as its draft defines them (an `enum`
    or `const` value holding a "$ref" key is data, not a reference)."""
    where: dict[int, str] = {}
    _index(resource.contents, pointer, where)
    for sub in resource.subresources():
        found = where.get(id(sub.contents))
        if found is not None:
            yield sub, found


def _index(node: Any, pointer: str, where: dict[int, str], depth: int = 0) -> None:
    """JSON Pointers of the objects a few levels below `node`, by identity (a subschema sits at most two keys below
    its parent: `properties/name`, `items`, `prefixItems/0`); one pass, so a node with many properties stays linear."""
    if depth > 2:
        return
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if isinstance(value, dict | list):
            p = f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}"
            where.setdefault(id(value), p)
            _index(value, p, where, depth + 1)


def _unresolvable_ref(schema: dict[str, Any], cls: Any) -> tuple[str, str] | None:
    """Every `$ref` must resolve inside the document, against the base URI its enclosing `$id`s give it (as
    validation resolves it); remote ones are never fetched, so they are refused."""
    root = cls(schema, registry=NO_REMOTE)._resolver
    spec = specification_with(schema.get("$schema", ""), default=DRAFT202012)
    stack = [(spec.create_resource(schema), root, "")]
    while stack:
        resource, resolver, pointer = stack.pop()
        contents = resource.contents
        ref = contents.get("$ref") if isinstance(contents, dict) else None
        if isinstance(ref, str):
            try:
                resolver.lookup(ref)
            except Unresolvable:
                return (
                    f"$ref {ref!r} does not resolve inside the schema; Loupe never fetches schemas "
                    "(inline it under $defs)",
                    f"{pointer}/$ref",
                )
            except Exception as err:  # a malformed pointer or URI
                return (f"unresolvable $ref {ref!r}: {type(err).__name__}", f"{pointer}/$ref")
        for sub, sub_pointer in _subschemas(resource, pointer):
            stack.append((sub, resolver.in_subresource(sub), sub_pointer))
    return None


def validation_errors(schema: Any, instance: Any, limit: int = 5, *, formats: str = "assertion") -> list[str]:
    """Validator messages (with the JSON Pointer of each bad value), best first; [] when valid. `formats` is the
    task's `format` option: "assertion" checks `format` values, "annotation" does not."""
    validator = _validator(schema, formats)
    try:
        errors = sorted(validator.iter_errors(instance), key=js_exc.relevance)
    except Unresolvable as err:  # a $ref that points outside the document: never fetched, so never satisfied
        return [f"/: $ref {err.ref!r} does not resolve inside the schema (never fetched)"]
    except PatternTimeout as err:
        return [
            f"/: the pattern {err.pattern!r} took over {PATTERN_TIMEOUT_S} s on this value, so it is not "
            "accepted (simplify the pattern)"
        ]
    except RecursionError:
        return ["/: the schema refers to itself without end ($ref cycle) or nests too deeply"]
    return [f"{pointer_of(e.absolute_path) or '/'}: {e.message}" for e in errors[:limit]]
