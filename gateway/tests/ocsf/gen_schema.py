#!/usr/bin/env python3
"""Regenerate schema.json (JSON Schema 2020-12) from the compiled OCSF 1.8.0 export.

The export is schema.ocsf.io/1.8.0/export/v2/schema; the PyPI package ocsf-json-schema 1.2.0
ships a copy as ocsf_json_schema/ocsf/1.8.0.json:

    pip download --no-deps ocsf-json-schema==1.2.0 -d /tmp/o && cd /tmp/o && python3 -m zipfile -e *.whl x
    python3 gen_schema.py x/ocsf_json_schema/ocsf/1.8.0.json schema.json

Standard library only. Not needed to run the tests; kept for provenance.
"""
import json
import re
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "s18.json"
OUT = sys.argv[2] if len(sys.argv) > 2 else "schema.json"

d = json.load(open(SRC))
assert d["version"] == "1.8.0", d["version"]
TYPES = d["dictionary"]["types"]["attributes"]

CLASSES = ["datastore_activity", "authentication", "event_log_actvity"]
# Objects whose enum siblings (X_id -> X caption) are checked for consistency.
SIBLING_CHECKED_OBJECTS = {
    "metadata", "product", "actor", "process", "user", "session", "network_endpoint",
    "database", "table", "query_info", "authorization", "policy", "file",
    "digital_signature", "fingerprint", "group", "service", "device", "account",
    "data_classification", "logger", "auth_factor", "observable", "databucket",
    "authentication_token", "certificate", "os", "reporter", "idp",
}

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
# Tollgate strictness: timestamp_t is "ms since the Unix epoch"; reject values
# that are obviously seconds (< 1e11 => before 1973-03-03 in ms) or micro/nano
# seconds (> 1e14 => after year 5138 in ms).
TS_MIN, TS_MAX = 100_000_000_000, 100_000_000_000_000


def strip_html(s):
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", s or "")).strip()


def base_type(tname):
    """Resolve an OCSF scalar type to (primitive, [constraints...])."""
    chain = []
    t = tname
    while t in TYPES:
        chain.append(t)
        nxt = TYPES[t].get("type")
        if not nxt or nxt == t:
            break
        t = nxt
    return chain


def scalar_schema(tname):
    chain = base_type(tname)
    prim = chain[-1] if chain else tname
    s = {}
    if prim == "boolean_t":
        s["type"] = "boolean"
    elif prim == "integer_t":
        # The official OCSF validator (ocsf-server Validator2) accepts -2^63..2^63-1.
        s.update(type="integer", minimum=INT64[0], maximum=INT64[1])
    elif prim == "long_t":
        # dictionary: "8-byte long, signed integer value" (the server accepts up to 2^127).
        s.update(type="integer", minimum=INT64[0], maximum=INT64[1])
    elif prim == "float_t":
        s["type"] = "number"
    elif prim == "string_t":
        s["type"] = "string"
    elif prim == "json_t":
        pass  # any JSON value
    else:
        raise SystemExit(f"unknown type {tname}")
    # subtype constraints (first one wins: most specific)
    for t in chain:
        td = TYPES[t]
        if "regex" in td and "pattern" not in s:
            re.compile(td["regex"])
            s["pattern"] = td["regex"]
        if "max_len" in td and "maxLength" not in s:
            s["maxLength"] = td["max_len"]
        if "range" in td:
            s["minimum"], s["maximum"] = td["range"]
    if tname == "timestamp_t":
        s["minimum"], s["maximum"] = TS_MIN, TS_MAX
        s["$comment"] = "OCSF timestamp_t: milliseconds since the Unix epoch (Tollgate sanity window 1e11..1e14)."
    return s


used_objects = set()
pending = []


def obj_ref(name):
    if name not in used_objects:
        used_objects.add(name)
        pending.append(name)
    return {"$ref": f"#/$defs/object.{name}"}


def attr_schema(aname, a):
    if a["type"] == "object_t":
        ot = a["object_type"]
        if ot == "object":
            item = {"type": "object", "$comment": "OCSF 'object': free-form, any content"}
        else:
            item = obj_ref(ot)
    else:
        item = scalar_schema(a["type"])
        enum = a.get("enum")
        if enum:
            if item.get("type") == "integer":
                item = {"type": "integer", "enum": sorted(int(k) for k in enum)}
            else:
                # The official validator checks string enums too (e.g. http_method).
                item = {"type": "string", "enum": sorted(enum)}
    if a.get("is_array"):
        s = {"type": "array", "items": item}
    else:
        s = dict(item)
    s["title"] = a.get("caption", aname)
    if a.get("profiles"):
        # Only allowed when metadata.profiles names one of these (ocsf-server filters
        # profile attributes by metadata.profiles and reports others as attribute_unknown).
        s["x-ocsf-profiles"] = sorted(a["profiles"])
    if a.get("@deprecated"):
        s["deprecated"] = True
        s["$comment"] = ("DEPRECATED since %s: %s" % (a["@deprecated"].get("since"),
                                                       strip_html(a["@deprecated"].get("message"))))
    return s


def keep_attr(a):
    # Extension-only attributes (win/linux/macos extension objects) are out of scope.
    return not a.get("extension")


def sibling_rules(attrs):
    rules = []
    for aname in sorted(attrs):
        a = attrs[aname]
        sib = a.get("sibling")
        enum = a.get("enum")
        if not sib or not enum or sib not in attrs or a["type"] not in ("integer_t", "long_t"):
            continue
        for k in sorted(enum, key=int):
            if int(k) == 99:
                continue  # 'Other': the sibling carries a source-specific value
            rules.append({
                "if": {"properties": {aname: {"const": int(k)}}, "required": [aname]},
                "then": {"properties": {sib: {"const": enum[k]["caption"]}}},
            })
    return rules


def constraint_rules(constraints, attrs, where):
    rules = []
    for kind, names in (constraints or {}).items():
        present = [n for n in names if n in attrs]
        missing = [n for n in names if n not in attrs]
        if missing:
            print(f"note: {where} constraint {kind} names undefined attribute(s) {missing}; dropped",
                  file=sys.stderr)
        if not present:
            continue
        alts = [{"required": [n]} for n in present]
        if kind == "at_least_one":
            rules.append({"anyOf": alts, "$comment": f"OCSF constraint at_least_one: {present}"})
        elif kind == "just_one":
            rules.append({"oneOf": alts, "$comment": f"OCSF constraint just_one: {present}"})
        else:
            raise SystemExit(kind)
    return rules


def object_schema(name):
    o = d["objects"][name]
    attrs = {k: v for k, v in o["attributes"].items() if keep_attr(v)}
    s = {
        "title": o.get("caption", name),
        "description": strip_html(o.get("description"))[:300],
        "type": "object",
        "properties": {k: attr_schema(k, attrs[k]) for k in sorted(attrs)},
        "additionalProperties": False,
    }
    req = sorted(k for k, v in attrs.items() if v.get("requirement") == "required" and not v.get("profiles"))
    if req:
        s["required"] = req
    if name == "metadata":
        s["properties"]["profiles"]["items"] = {"type": "string", "enum": sorted(d["profiles"])}
        s["properties"]["version"]["const"] = d["version"]
    rules = constraint_rules(o.get("constraints"), attrs, f"object {name}")
    if name in SIBLING_CHECKED_OBJECTS:
        rules += sibling_rules(attrs)
    if rules:
        s["allOf"] = rules
    return s


def class_schema(cname):
    c = d["classes"][cname]
    uid = c["uid"]
    attrs = {k: v for k, v in c["attributes"].items() if keep_attr(v)}
    s = {
        "title": f"{c['caption']} [{uid}] ({c['category_name']} [{c['category_uid']}])",
        "description": strip_html(c.get("description")),
        "type": "object",
        "properties": {k: attr_schema(k, attrs[k]) for k in sorted(attrs)},
        "additionalProperties": False,
    }
    s["properties"]["class_uid"] = {"const": uid, "title": "Class ID"}
    s["properties"]["category_uid"] = {"const": c["category_uid"], "title": "Category ID"}
    s["properties"]["class_name"] = {"const": c["caption"], "title": "Class"}
    s["properties"]["category_name"] = {"const": c["category_name"], "title": "Category"}
    s["properties"]["timezone_offset"].update(minimum=-1080, maximum=1080)
    s["required"] = sorted(k for k, v in attrs.items()
                           if v.get("requirement") == "required" and not v.get("profiles"))
    rules = constraint_rules(c.get("constraints"), attrs, f"class {cname}")
    # type_uid = class_uid * 100 + activity_id
    for k in sorted(attrs["activity_id"]["enum"], key=int):
        rules.append({
            "if": {"properties": {"activity_id": {"const": int(k)}}, "required": ["activity_id"]},
            "then": {"properties": {"type_uid": {"const": uid * 100 + int(k)}}},
        })
    # Profile-gated requirements: only when metadata.profiles declares the profile.
    gated = {}
    for k, v in attrs.items():
        if v.get("requirement") == "required" and v.get("profiles"):
            for p in v["profiles"]:
                gated.setdefault(p, []).append(k)
    for p, names in sorted(gated.items()):
        rules.append({
            "if": {"properties": {"metadata": {"properties": {"profiles": {"contains": {"const": p}}},
                                                "required": ["profiles"]}},
                   "required": ["metadata"]},
            "then": {"required": sorted(names)},
            "$comment": f"profile '{p}' applied => {sorted(names)} required",
        })
    by_profiles = {}
    for k, v in attrs.items():
        if v.get("profiles"):
            by_profiles.setdefault(tuple(sorted(v["profiles"])), []).append(k)
    for profs, names in sorted(by_profiles.items()):
        declared = [{"properties": {"metadata": {"properties": {"profiles": {"contains": {"const": p}}},
                                                  "required": ["profiles"]}},
                     "required": ["metadata"]} for p in profs]
        rules.append({
            "if": {"not": {"anyOf": declared}},
            "then": {"properties": {n: {"not": {}, "x-requires-profile": list(profs)} for n in sorted(names)}},
            "$comment": f"attributes of profile {list(profs)}: only with metadata.profiles naming it",
        })
    rules += sibling_rules(attrs)
    s["allOf"] = rules
    s["x-ocsf"] = {
        "class_uid": uid, "class_name": c["caption"], "name": cname,
        "category_uid": c["category_uid"], "category_name": c["category_name"],
        "profiles": c.get("profiles", []),
        "activities": {int(k): v["caption"] for k, v in attrs["activity_id"]["enum"].items()},
        "required": s["required"],
        "recommended": sorted(k for k, v in attrs.items() if v.get("requirement") == "recommended"),
    }
    return uid, s


defs = {}
class_refs = []
for cname in CLASSES:
    uid, cs = class_schema(cname)
    defs[f"class.{uid}"] = cs
    class_refs.append(uid)
while pending:
    n = pending.pop()
    defs[f"object.{n}"] = object_schema(n)

defs = {k: defs[k] for k in sorted(defs)}
schema = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:tollgate:ocsf:1.8.0:audit-export",
    "$comment": (
        "OCSF 1.8.0. Generated from the compiled OCSF 1.8.0 schema export "
        "(schema.ocsf.io/1.8.0/export/v2/schema, as bundled in the PyPI package ocsf-json-schema 1.2.0, "
        "file ocsf_json_schema/ocsf/1.8.0.json), itself compiled from the ocsf/ocsf-schema source files "
        "version.json (1.8.0), dictionary.json, events/base_event.json, events/application/datastore_activity.json "
        "(6005), events/iam/authentication.json (3002), events/system/event_log_activity.json (1008), "
        "objects/*.json and profiles/*.json. Validates one event of class 6005 Datastore Activity, "
        "3002 Authentication or 1008 Event Log Activity, including the attributes of every profile those classes "
        "accept (security_control, host, cloud, container, datetime, osint, data_classification, ai_operation, "
        "linux/linux_users); as in the official validator (ocsf-server Validator2) a profile's attributes are only "
        "accepted when metadata.profiles names that profile (checked here at the event's top level; "
        "validate.py also checks it inside objects, using the x-ocsf-profiles annotations). Stricter than OCSF on purpose: unknown attributes are rejected everywhere "
        "(vendor data goes in 'unmapped'); enum siblings (activity_name, type_name, severity, status, "
        "disposition, action, ...) must equal the enum caption unless the id is 99 (Other); "
        "type_uid must equal class_uid*100+activity_id; integer_t and long_t are bounded to int64; "
        "timestamp_t must be epoch milliseconds within 1e11..1e14. See MAPPING.md."
    ),
    "title": "Tollgate OCSF 1.8.0 audit export event",
    "type": "object",
    "required": ["class_uid"],
    "properties": {
        "class_uid": {"enum": class_refs,
                      "$comment": "6005 Datastore Activity, 3002 Authentication, 1008 Event Log Activity"},
    },
    "allOf": [
        {"if": {"properties": {"class_uid": {"const": uid}}, "required": ["class_uid"]},
         "then": {"$ref": f"#/$defs/class.{uid}"}}
        for uid in class_refs
    ],
    "$defs": defs,
}
json.dump(schema, open(OUT, "w"), indent=1, ensure_ascii=False)
open(OUT, "a").write("\n")
print(f"wrote {OUT}: {len(defs)} defs, objects={len(used_objects)}", file=sys.stderr)
