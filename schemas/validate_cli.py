"""``stadtlink validate FILE...``: check NGSI-LD entities in JSON files.

A file holds one entity or a list of entities (normalized unless ``--key-values``). Each problem
is printed to stdout as ``FILE: <entity id>: <path>: <message>``. Exit status: 0 when everything
is valid, 1 when any entity is invalid, 2 when a file cannot be read or is not JSON.

Besides the schema, every attribute of a normalized entity must expand through the @context it is
written with (``--context URL``, e.g. the adapter's; default: the entity's own ``@context`` member,
else its model's own @context) to the IRI its model's own @context gives it; an attribute that
lands on another model's term or in the default vocabulary is reported with the IRI it got
(``--no-vocabulary`` skips this check).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence, TextIO

from . import check_entity, check_key_values, known_models, vocabulary
from .registry import model_for
from .problems import UnknownModel

EXIT_OK, EXIT_INVALID, EXIT_UNREADABLE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stadtlink validate",
        description="Check NGSI-LD entities against the bundled FIWARE Smart Data Models schemas "
                    "(structure, keyValues reduction, JSON Schema 2020-12 with format checks).",
    )
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="JSON file with one entity or a list of entities ('-' reads stdin)")
    parser.add_argument("--model", choices=known_models(), default=None,
                        help="check against this model instead of each entity's type")
    parser.add_argument("--key-values", action="store_true",
                        help="the files hold keyValues entities, not normalized ones")
    parser.add_argument("--context", metavar="URL", default=None,
                        help="the @context the entities are written with, e.g. the adapter's (default: each "
                             "entity's own @context member, else its model's own @context)")
    parser.add_argument("--no-vocabulary", action="store_true",
                        help="do not check that attributes expand to their model's own IRIs")
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary line on stderr")
    return parser


def _read(name: str) -> Any:
    if name == "-":
        return json.load(sys.stdin)
    with open(name, encoding="utf-8") as handle:
        return json.load(handle)


def _label(entity: object, index: int | None) -> str:
    if isinstance(entity, dict) and isinstance(entity.get("id"), str) and entity["id"]:
        return entity["id"]
    return "<entity without id>" if index is None else f"<entity #{index} without id>"


def _vocabulary_lines(entity: dict, context: str | None, err: TextIO, told: set[str]) -> list[str]:
    """``$.<attribute>: vocabulary: ...`` for every attribute off its model's own IRI."""
    if context is None:
        context = entity.get("@context")
    if context is None:
        model = model_for(entity.get("type")) if isinstance(entity.get("type"), str) else None
        if model is None:
            return []
        context = vocabulary.own_context(entity["type"])
    if isinstance(context, str):
        local = vocabulary.local_context(context)
        if local is None:
            if context not in told:
                told.add(context)
                print(f"note: @context {context} has no local copy: attribute IRIs not checked", file=err)
            return []
        context = local
    try:
        found = vocabulary.vocabulary_problems(entity, context)
    except (UnknownModel, TypeError, ValueError) as exc:
        key = str(exc)
        if key not in told:
            told.add(key)
            print(f"note: attribute IRIs not checked: {exc}", file=err)
        return []
    return [f"{'$.type' if p.attribute == 'type' else '$.' + p.attribute}: vocabulary: {p}" for p in found]


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Run the validator; ``argv`` excludes the program name. Returns the exit status."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse already printed usage/help
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_UNREADABLE

    status = EXIT_OK
    checked = invalid = 0
    told: set[str] = set()
    for name in args.files:
        try:
            document = _read(name)
        except OSError as exc:
            print(f"{name}: cannot read file: {exc.strerror or exc}", file=err)
            status = EXIT_UNREADABLE
            continue
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            print(f"{name}: not valid JSON: {exc}", file=err)
            status = EXIT_UNREADABLE
            continue
        entities = document if isinstance(document, list) else [document]
        for index, entity in enumerate(entities):
            if args.key_values:
                problems = check_key_values(entity, args.model)
            else:
                problems = check_entity(entity, model=args.model)
            lines = [f"{problem.path}: {problem.message}" for problem in problems]
            if not args.key_values and not args.no_vocabulary and isinstance(entity, dict):
                lines += _vocabulary_lines(entity, args.context, err, told)
            checked += 1
            if lines:
                invalid += 1
                label = _label(entity, index if isinstance(document, list) else None)
                for line in lines:
                    print(f"{name}: {label}: {line}", file=out)
        if invalid and status == EXIT_OK:
            status = EXIT_INVALID
    if not args.quiet:
        print(f"{checked} entities checked, {invalid} invalid", file=err)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
