#!/usr/bin/env python3
"""Validate Tollgate's OCSF export (NDJSON, one event per line) against schema.json.

    python3 validate.py FILE.ndjson [FILE.ndjson ...] [--schema PATH] [--warn-recommended]

Each failure is printed as `file:line: class_uid=N path: message`; the exit status is 1 when
any line fails, 2 on a usage error or an input with no events, 0 otherwise, with the summary
`N events valid (class_uid: count, ...)`. FILE may be `-` for standard input.

Beyond the JSON Schema (Draft 2020-12), this checks what a schema cannot express and the
official OCSF validator (ocsf-server Validator2) does:
  * an attribute of an OCSF profile inside an object (e.g. `*_dt` from `datetime`,
    `process.group` from `linux/linux_users`) needs that profile in `metadata.profiles`
    (schema.json itself checks the event's top-level attributes);
  * every `observables[].name` must name an attribute path of the event's class;
  * duplicate keys in a JSON object, NaN and Infinity are errors.
Warnings (never failures): deprecated attributes; with --warn-recommended, recommended
top-level attributes that are missing.

Standard library + the `jsonschema` package only.
"""
import argparse
import json
import os
import sys
from collections import Counter

try:
    from jsonschema import Draft202012Validator
except ImportError:  # pragma: no cover
    sys.exit("validate.py needs the jsonschema package: pip install jsonschema")

HERE = os.path.dirname(os.path.abspath(__file__))


class BadJSON(ValueError):
    pass


def _pairs(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise BadJSON(f"duplicate key {k!r}")
        obj[k] = v
    return obj


def _constant(name):
    raise BadJSON(f"{name} is not valid JSON")


def parse_line(text):
    return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)


def fmt_path(parts):
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "(event)"


class Checker:
    def __init__(self, schema):
        Draft202012Validator.check_schema(schema)
        self.schema = schema
        self.defs = schema["$defs"]
        self.validator = Draft202012Validator(schema)

    # -- schema navigation -------------------------------------------------------------------
    def resolve(self, node):
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/$defs/"):
                return node
            node = self.defs[ref[len("#/$defs/"):]]
            seen += 1
            if seen > 50:
                break
        return node

    def object_node(self, prop):
        """The object schema an attribute holds (through arrays and $ref), or None."""
        node = self.resolve(prop)
        if isinstance(node, dict) and node.get("type") == "array":
            node = self.resolve(node.get("items", {}))
        if isinstance(node, dict) and "properties" in node:
            return node
        return None

    # -- checks ------------------------------------------------------------------------------
    def message(self, e):
        sch = e.schema if isinstance(e.schema, dict) else {}
        name = e.path[-1] if e.path else None
        if e.validator == "not" and "x-requires-profile" in sch:
            profs = " or ".join(repr(p) for p in sch["x-requires-profile"])
            return (f"attribute {name!r} belongs to the OCSF profile {profs}, "
                    f"which metadata.profiles does not name")
        if e.validator in ("anyOf", "oneOf") and str(sch.get("$comment", "")).startswith("OCSF constraint"):
            names = [alt["required"][0] for alt in e.validator_value]
            how = "at least one" if e.validator == "anyOf" else "exactly one"
            return f"{how} of {names} is required ({sch['$comment']})"
        if e.validator == "const":
            msg = f"{e.instance!r} found, {e.validator_value!r} expected"
            if name == "type_uid":
                msg += " (type_uid = class_uid * 100 + activity_id)"
            elif list(e.schema_path)[-4:-2] == ["then", "properties"] and isinstance(e.instance, str):
                msg += " (an enum sibling must be the caption of its *_id value unless the id is 99 Other)"
            return msg
        if e.validator == "pattern":
            return f"{e.instance!r} is not a valid {sch.get('title', 'value')} (pattern of its OCSF type)"
        if e.validator in ("minimum", "maximum") and "timestamp_t" in str(sch.get("$comment", "")):
            return f"{e.message} (OCSF timestamp_t is milliseconds since the Unix epoch)"
        if e.validator == "enum" and isinstance(e.validator_value, list) and len(e.validator_value) > 20:
            return f"{e.instance!r} is not a defined value of this OCSF enum"
        return e.message

    def walk(self, inst, node, path, declared, errors, warnings, top):
        if not isinstance(inst, dict) or node is None:
            return
        props = node.get("properties", {})
        for key, val in inst.items():
            prop = props.get(key)
            if prop is None:
                continue  # additionalProperties: the schema reports it
            p = path + [key]
            profs = prop.get("x-ocsf-profiles")
            if profs and not top and not (declared & set(profs)):
                errors.append((p, f"attribute {key!r} belongs to the OCSF profile "
                                  + " or ".join(repr(x) for x in profs)
                                  + ", which metadata.profiles does not name"))
            if prop.get("deprecated"):
                warnings.append((p, f"deprecated attribute: {prop.get('$comment', '')}"))
            child = self.object_node(prop)
            if child is None:
                continue
            if isinstance(val, list):
                for i, item in enumerate(val):
                    self.walk(item, child, p + [i], declared, errors, warnings, False)
            else:
                self.walk(val, child, p, declared, errors, warnings, False)

    def observable_names(self, event, cls, declared, errors):
        obs = event.get("observables")
        if not isinstance(obs, list):
            return
        for i, o in enumerate(obs):
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                continue
            node, ok = cls, True
            for part in o["name"].split("."):
                prop = (node or {}).get("properties", {}).get(part)
                if prop is None or (prop.get("x-ocsf-profiles") and not declared & set(prop["x-ocsf-profiles"])):
                    ok = False
                    break
                node = self.object_node(prop)
            if not ok:
                errors.append((["observables", i, "name"],
                               f"{o['name']!r} does not name an attribute of class {cls.get('title', '')}"))

    def check(self, event, warn_recommended):
        errors, warnings = [], []
        for e in self.validator.iter_errors(event):
            errors.append((list(e.absolute_path), self.message(e)))
        uid = event.get("class_uid")
        cls = self.defs.get(f"class.{uid}") if isinstance(uid, int) and not isinstance(uid, bool) else None
        if cls is not None:
            md = event.get("metadata")
            profs = md.get("profiles") if isinstance(md, dict) else None
            declared = {p for p in profs if isinstance(p, str)} if isinstance(profs, list) else set()
            self.walk(event, cls, [], declared, errors, warnings, True)
            self.observable_names(event, cls, declared, errors)
            if warn_recommended:
                for attr in cls["x-ocsf"]["recommended"]:
                    need = cls["properties"][attr].get("x-ocsf-profiles")
                    if attr not in event and (not need or declared & set(need)):
                        warnings.append(([attr], "recommended attribute is missing"))
        uniq = sorted({(fmt_path(p), m) for p, m in errors})
        return uniq, sorted({(fmt_path(p), m) for p, m in warnings})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", metavar="FILE.ndjson")
    ap.add_argument("--schema", default=os.path.join(HERE, "schema.json"))
    ap.add_argument("--warn-recommended", action="store_true",
                    help="also warn about missing recommended top-level attributes")
    args = ap.parse_args(argv)

    with open(args.schema, encoding="utf-8") as f:
        checker = Checker(json.load(f))

    valid, failed, total = Counter(), 0, 0
    usage_error = False
    for name in args.files:
        try:
            stream = sys.stdin if name == "-" else open(name, encoding="utf-8")
        except OSError as exc:
            print(f"{name}: cannot read: {exc}")
            usage_error = True
            continue
        events_in_file = 0
        with stream:
            for lineno, raw in enumerate(stream, 1):
                line = raw.rstrip("\r\n")
                events_in_file += 1
                total += 1
                if not line.strip():
                    print(f"{name}:{lineno}: class_uid=? (line): blank line (NDJSON holds one event per line)")
                    failed += 1
                    continue
                try:
                    event = parse_line(line)
                except (ValueError, BadJSON) as exc:
                    print(f"{name}:{lineno}: class_uid=? (line): not valid JSON: {exc}")
                    failed += 1
                    continue
                if not isinstance(event, dict):
                    print(f"{name}:{lineno}: class_uid=? (line): an event must be a JSON object")
                    failed += 1
                    continue
                uid = event.get("class_uid", "?")
                errors, warnings = checker.check(event, args.warn_recommended)
                for path, msg in warnings:
                    print(f"{name}:{lineno}: class_uid={uid} {path}: warning: {msg}")
                for path, msg in errors:
                    print(f"{name}:{lineno}: class_uid={uid} {path}: {msg}")
                if errors:
                    failed += 1
                else:
                    valid[uid] += 1
        if events_in_file == 0:
            print(f"{name}: no events (empty input)")
            usage_error = True

    counts = ", ".join(f"{k}: {v}" for k, v in sorted(valid.items(), key=lambda kv: str(kv[0])))
    if failed:
        print(f"{failed} of {total} events invalid; {sum(valid.values())} valid ({counts or 'none'})")
        return 1
    if usage_error or total == 0:
        print("no events validated" if total == 0 else f"{total} events valid ({counts}), but some input was empty or unreadable")
        return 2
    print(f"{total} events valid ({counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
