#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Strict checker for the Prometheus text exposition format 0.0.4.

Usage:
    prom_check.py FILE [--expect SERIES=VALUE ...] [--get SERIES ...] [--dump]
    prom_check.py --self-test

FILE is a path or '-' for stdin.  The file is parsed strictly; any
violation is reported on stderr (with its line number) and the exit status
is 1.  Rules enforced:

  * the text is UTF-8, ends with a newline and has no carriage returns;
  * metric and label names are valid ([a-zA-Z_:][a-zA-Z0-9_:]* and
    [a-zA-Z_][a-zA-Z0-9_]*; label names starting with __ are reserved);
  * '# HELP name text' and '# TYPE name type' are well formed, HELP text
    uses only the escapes \\\\ and \\n, the type is one of counter, gauge,
    histogram, summary, untyped;
  * every metric family has exactly one TYPE line, before its first
    sample, and at most one HELP line, also before its first sample;
  * the samples of a family are contiguous (one group per family);
  * labels are {name="value",...} with only \\\\, \\" and \\n escapes in
    values, no duplicate label names, optional trailing comma;
  * values parse as floats (NaN, +Inf, -Inf allowed); an optional
    timestamp is an integer;
  * no series (name plus label set) appears twice;
  * counters are named *_total and are not negative (nor NaN);
  * histogram/summary samples use the family's _bucket/_sum/_count (and
    quantile/le labels) as the format requires.

SERIES is a metric name with optional labels in any order, e.g.
'kvfs_evictions_total{reason="lru"}'.  --expect accepts the operators
=, ==, !=, >=, <=, > and < (e.g. --expect 'kvfs_files>=3'); every failed
expectation is reported.  --get prints the value of each SERIES on its own
line (integers without a decimal point) and fails if a series is absent.
--dump prints every series, normalised, with its value.
"""

import math
import re
import sys

METRIC_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
FLOAT_RE = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
SPECIAL = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf, "Inf": math.inf}


class PromError(Exception):
    pass


def parse_float(s, what):
    if s in SPECIAL:
        return SPECIAL[s]
    if not FLOAT_RE.fullmatch(s):
        raise PromError("%s %r is not a float" % (what, s))
    return float(s)


def parse_labels(s, pos):
    """s[pos] == '{'. Returns (tuple of (name, value) pairs, position after '}')."""
    assert s[pos] == "{"
    pos += 1
    labels = []
    seen = set()
    while True:
        if pos >= len(s):
            raise PromError("unterminated label set")
        if s[pos] == "}":
            return tuple(labels), pos + 1
        m = LABEL_RE.match(s, pos)
        if not m:
            raise PromError("bad label name at column %d" % (pos + 1))
        name = m.group(0)
        if name.startswith("__"):
            raise PromError("label name %r is reserved (starts with __)" % name)
        if name in seen:
            raise PromError("duplicate label %r" % name)
        seen.add(name)
        pos = m.end()
        if s[pos:pos + 2] != '="':
            raise PromError("label %r: expected =\" at column %d" % (name, pos + 1))
        pos += 2
        val = []
        while True:
            if pos >= len(s):
                raise PromError("label %r: unterminated value" % name)
            c = s[pos]
            if c == "\\":
                e = s[pos + 1:pos + 2]
                if e == "\\":
                    val.append("\\")
                elif e == '"':
                    val.append('"')
                elif e == "n":
                    val.append("\n")
                else:
                    raise PromError("label %r: bad escape \\%s" % (name, e))
                pos += 2
            elif c == '"':
                pos += 1
                break
            elif c == "\n":
                raise PromError("label %r: raw newline in value" % name)
            else:
                val.append(c)
                pos += 1
        labels.append((name, "".join(val)))
        if pos < len(s) and s[pos] == ",":
            pos += 1
        elif pos < len(s) and s[pos] == "}":
            pass
        else:
            raise PromError("label set: expected , or } at column %d" % (pos + 1))


def series_key(name, labels):
    return (name, tuple(sorted(labels)))


def fmt_series(key):
    name, labels = key
    if not labels:
        return name
    esc = lambda v: v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return name + "{" + ",".join('%s="%s"' % (k, esc(v)) for k, v in labels) + "}"


def parse_series(text):
    """'name{a="b"}' -> key, for --get/--expect."""
    text = text.strip()
    m = METRIC_RE.match(text)
    if not m:
        raise PromError("bad series %r" % text)
    labels = ()
    pos = m.end()
    if pos < len(text) and text[pos] == "{":
        labels, pos = parse_labels(text, pos)
    if pos != len(text):
        raise PromError("bad series %r" % text)
    return series_key(m.group(0), labels)


def check_help_text(t):
    i = 0
    while i < len(t):
        if t[i] == "\\":
            if t[i + 1:i + 2] not in ("\\", "n"):
                raise PromError("HELP text: bad escape \\%s" % t[i + 1:i + 2])
            i += 2
        else:
            i += 1


def parse(text):
    """Parse exposition text strictly. Returns (series dict key->value, types dict)."""
    errors = []
    if not text:
        raise PromError("empty exposition")
    if not text.endswith("\n"):
        errors.append("file does not end with a newline")
    if "\r" in text:
        errors.append("carriage return in the text")
    types = {}      # family -> type
    helps = {}      # family -> line number
    type_line = {}
    started = {}    # family -> line of first sample
    finished = set()  # families whose sample group has ended
    current = None  # family of the previous sample line
    series = {}

    def family_of(name):
        if name in types:
            return name
        for suf in ("_bucket", "_sum", "_count"):
            if name.endswith(suf):
                base = name[: -len(suf)]
                t = types.get(base)
                if t == "histogram" or (t == "summary" and suf != "_bucket"):
                    return base
        return name

    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for no, line in enumerate(lines, 1):
        try:
            if line == "":
                continue  # empty lines are ignored by the format
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 2 and parts[0] == "#" and parts[1] in ("HELP", "TYPE"):
                    if not line.startswith("# " + parts[1] + " "):
                        raise PromError("%s line must be '# %s name ...'" % (parts[1], parts[1]))
                    if len(parts) < 3:
                        raise PromError("%s line without a metric name" % parts[1])
                    name = parts[2]
                    if not METRIC_RE.fullmatch(name):
                        raise PromError("bad metric name %r in %s" % (name, parts[1]))
                    if name in started:
                        raise PromError("%s for %s after its samples (line %d)"
                                        % (parts[1], name, started[name]))
                    if parts[1] == "HELP":
                        if name in helps:
                            raise PromError("second HELP for %s (first on line %d)"
                                            % (name, helps[name]))
                        helps[name] = no
                        rest = line[len("# HELP " + name):]
                        if rest and not rest.startswith(" "):
                            raise PromError("HELP %s: bad separator" % name)
                        check_help_text(rest[1:])
                    else:
                        if name in types:
                            raise PromError("second TYPE for %s (first on line %d)"
                                            % (name, type_line[name]))
                        if len(parts) != 4 or parts[3] not in TYPES:
                            raise PromError("TYPE %s: type must be one of %s, got %r"
                                            % (name, "|".join(TYPES), " ".join(parts[3:])))
                        if line != "# TYPE %s %s" % (name, parts[3]):
                            raise PromError("TYPE line has extra whitespace")
                        types[name] = parts[3]
                        type_line[name] = no
                        if parts[3] == "counter" and not name.endswith("_total"):
                            raise PromError("counter %s is not named *_total" % name)
                continue  # other comments are allowed
            m = METRIC_RE.match(line)
            if not m:
                raise PromError("bad metric name at start of sample line")
            name = m.group(0)
            pos = m.end()
            labels = ()
            if pos < len(line) and line[pos] == "{":
                labels, pos = parse_labels(line, pos)
            if pos >= len(line) or line[pos] != " ":
                raise PromError("%s: expected a space before the value" % name)
            fields = line[pos + 1:].split(" ")
            if len(fields) not in (1, 2) or "" in fields:
                raise PromError("%s: expected 'value [timestamp]' with single spaces, got %r"
                                % (name, line[pos + 1:]))
            value = parse_float(fields[0], "%s: value" % name)
            if len(fields) == 2 and not re.fullmatch(r"-?\d+", fields[1]):
                raise PromError("%s: timestamp %r is not an integer" % (name, fields[1]))
            fam = family_of(name)
            if fam not in types:
                raise PromError("sample %s has no # TYPE line before it" % name)
            if fam in finished:
                raise PromError("samples of %s are not contiguous (first on line %d)"
                                % (fam, started[fam]))
            if current is not None and current != fam:
                finished.add(current)
            current = fam
            started.setdefault(fam, no)
            t = types[fam]
            if t == "counter":
                if math.isnan(value) or value < 0:
                    raise PromError("counter %s has value %s" % (name, fields[0]))
            if t == "histogram" and name == fam:
                raise PromError("histogram %s: sample must be _bucket, _sum or _count" % name)
            if t == "histogram" and name == fam + "_bucket" and "le" not in dict(labels):
                raise PromError("histogram bucket %s without le label" % name)
            if t == "summary" and name == fam and "quantile" not in dict(labels):
                raise PromError("summary %s quantile sample without quantile label" % name)
            key = series_key(name, labels)
            if key in series:
                raise PromError("duplicate series %s" % fmt_series(key))
            series[key] = value
        except PromError as e:
            errors.append("line %d: %s" % (no, e))
    if errors:
        raise PromError("\n".join(errors))
    return series, types


OPS = (("==", lambda a, b: a == b), ("!=", lambda a, b: a != b), (">=", lambda a, b: a >= b),
       ("<=", lambda a, b: a <= b), ("=", lambda a, b: a == b), (">", lambda a, b: a > b),
       ("<", lambda a, b: a < b))


def split_expect(e):
    """'name{l="v"}>=3' -> (key, op, func, value)."""
    m = METRIC_RE.match(e)
    if not m:
        raise PromError("bad --expect %r" % e)
    pos = m.end()
    labels = ()
    if pos < len(e) and e[pos] == "{":
        labels, pos = parse_labels(e, pos)
    for op, fn in OPS:
        if e.startswith(op, pos):
            return series_key(m.group(0), labels), op, fn, parse_float(e[pos + len(op):], "--expect value")
    raise PromError("--expect %r: expected SERIES=VALUE (or ==, !=, >=, <=, >, <)" % e)


def fmt_value(v):
    if math.isfinite(v) and v == int(v):
        return str(int(v))
    return repr(v)


def self_test():
    good = ('# HELP a_total Things.\n# TYPE a_total counter\na_total{x="1"} 3\n'
            'a_total{x="a\\"b\\\\c\\nd"} 4 1700000000\n'
            '# TYPE g gauge\ng -1.5e3\n# TYPE h histogram\nh_bucket{le="1"} 1\n'
            'h_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n# a comment\n')
    s, _ = parse(good)
    assert s[parse_series('a_total{x="a\\"b\\\\c\\nd"}')] == 4
    assert s[("g", ())] == -1500
    bad = {
        "no newline": "# TYPE a gauge\na 1",
        "no type": "a 1\n",
        "type after sample": "a 1\n# TYPE a gauge\n",
        "two types": "# TYPE a gauge\n# TYPE a gauge\na 1\n",
        "two helps": "# HELP a x\n# HELP a y\n# TYPE a gauge\na 1\n",
        "bad type": "# TYPE a meter\na 1\n",
        "bad name": "# TYPE 1a gauge\n1a 1\n",
        "bad value": "# TYPE a gauge\na one\n",
        "dup series": '# TYPE a gauge\na{x="1",y="2"} 1\na{y="2",x="1"} 2\n',
        "dup label": '# TYPE a gauge\na{x="1",x="2"} 1\n',
        "bad escape": '# TYPE a gauge\na{x="\\t"} 1\n',
        "unterminated": '# TYPE a gauge\na{x="1} 1\n',
        "no quotes": "# TYPE a gauge\na{x=1} 1\n",
        "counter name": "# TYPE a counter\na 1\n",
        "negative counter": "# TYPE a_total counter\na_total -1\n",
        "not contiguous": "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"1\"} 2\n",
        "two spaces": "# TYPE a gauge\na  1\n",
        "crlf": "# TYPE a gauge\r\na 1\r\n",
        "bad timestamp": "# TYPE a gauge\na 1 1.5\n",
        "histogram base": "# TYPE h histogram\nh 1\n",
        "help escape": "# HELP a bad \\x\n# TYPE a gauge\na 1\n",
    }
    for what, text in bad.items():
        try:
            parse(text)
        except PromError:
            continue
        raise AssertionError("self-test: %s was accepted" % what)
    for e, ok in (("a_total{x=\"1\"}=3", True), ("a_total{x=\"1\"}>=4", False),
                  ("g<0", True), ("g!=-1500", False)):
        key, _, fn, v = split_expect(e)
        assert fn(s[key], v) == ok, e
    print("prom_check self-test: ok")
    return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    args = argv[1:]
    path = None
    expects, gets, dump = [], [], False
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--expect", "--get"):
            if i + 1 >= len(args):
                print("prom_check: %s needs an argument" % a, file=sys.stderr)
                return 2
            (expects if a == "--expect" else gets).append(args[i + 1])
            i += 2
            continue
        if a == "--dump":
            dump = True
        elif a.startswith("--") or path is not None:
            print(__doc__, file=sys.stderr)
            return 2
        else:
            path = a
        i += 1
    if path is None:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if path == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except OSError as e:
        print("prom_check: %s: %s" % (path, e), file=sys.stderr)
        return 1
    try:
        text = raw.decode("utf-8")
        series, _ = parse(text)
    except UnicodeDecodeError as e:
        print("prom_check: %s: not UTF-8: %s" % (path, e), file=sys.stderr)
        return 1
    except PromError as e:
        print("prom_check: %s: invalid exposition:\n%s" % (path, e), file=sys.stderr)
        return 1
    rc = 0
    try:
        for e in expects:
            key, op, fn, want = split_expect(e)
            if key not in series:
                print("prom_check: %s: no series %s" % (path, fmt_series(key)), file=sys.stderr)
                rc = 1
            elif not fn(series[key], want):
                print("prom_check: %s: expected %s %s %s, got %s"
                      % (path, fmt_series(key), op, fmt_value(want), fmt_value(series[key])),
                      file=sys.stderr)
                rc = 1
        for g in gets:
            key = parse_series(g)
            if key not in series:
                print("prom_check: %s: no series %s" % (path, fmt_series(key)), file=sys.stderr)
                rc = 1
                continue
            print(fmt_value(series[key]))
    except PromError as e:
        print("prom_check: %s" % e, file=sys.stderr)
        return 2
    if dump:
        for key in sorted(series):
            print("%s %s" % (fmt_series(key), fmt_value(series[key])))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
