"""JSON schemas to llama.cpp grammars, compiled once per schema and cached.

A schema becomes GBNF through llama-cpp-python's converter, then a grammar sampler
(llama.cpp parses the GBNF once). Each call gets a clone of that pristine sampler, which
copies the parsed rules without parsing them again.

Copy-constrained strings: a schema may carry the vendor keyword `x-copy-from` (at its
top level) holding a source text. Every free-form string in the schema (no `enum`,
`const`, `pattern` or `format`) is then compiled to a *span* of that text: a
contiguous run of its units (words, numbers, single punctuation marks), with the
text's own spacing between them. The grammar for n units has n small rules:
`s_i ::= u_i (gap_i s_{i+1})?`, and a span starts at any unit. So the model can only
copy, never rewrite ("Paris" cannot become "Paris, France").
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from typing import Any

import llama_cpp
from llama_cpp.llama_grammar import SchemaConverter

from taskloom.chat.base import COPY_KEYWORD
from taskloom.errors import SchemaError
from taskloom.logs import get_logger

log = get_logger(__name__)

_SPAN_MARK = "x-taskloom-span"
_UNIT = re.compile(r"\w+|[^\w\s]")


def _mark_spans(node: Any) -> Any:
    """Replace free-form string subschemas with the span marker (recursively)."""
    if isinstance(node, list):
        return [_mark_spans(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _mark_spans(v) for k, v in node.items()}
    kind = out.get("type")
    is_free = not any(k in out for k in ("enum", "const", "pattern", "format"))
    if kind == "string" and is_free:
        return {_SPAN_MARK: True}
    if isinstance(kind, list) and "string" in kind and is_free:
        others = [{"type": t} for t in kind if t != "string"]
        return {"anyOf": [{_SPAN_MARK: True}, *others]}
    return out


def _literal(s: str) -> str:
    """A GBNF string literal for `s` (escapes backslash, quote and control chars)."""
    out = []
    for ch in s:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def span_rules(text: str) -> dict[str, str]:
    """GBNF rules whose `copy-span` matches a JSON string holding a span of `text`."""
    units = [(m.start(), m.end()) for m in _UNIT.finditer(text)]
    if not units:
        return {"copy-span": '"\\"\\"" space'}

    def esc(s: str) -> str:
        # The value sits inside a JSON string, so it is JSON-escaped first.
        return _literal(json.dumps(s, ensure_ascii=False)[1:-1])

    rules: dict[str, str] = {}
    last = len(units) - 1
    for i, (start, end) in enumerate(units):
        unit = esc(text[start:end])
        if i == last:
            rules[f"copy-s{i}"] = unit
        else:
            gap = text[end : units[i + 1][0]]
            link = f"{esc(gap)} copy-s{i + 1}" if gap else f"copy-s{i + 1}"
            rules[f"copy-s{i}"] = f"{unit} ({link})?"
    starts = " | ".join(f"copy-s{i}" for i in range(len(units)))
    rules["copy-span"] = f'"\\"" ({starts}) "\\"" space'
    return rules


class _SpanConverter(SchemaConverter):
    """llama-cpp-python's converter, plus the span marker."""

    def visit(self, schema: dict[str, Any], name: str) -> str:
        if schema.get(_SPAN_MARK):
            return "copy-span"
        return str(super().visit(schema, name))  # type: ignore[no-untyped-call]


def schema_to_gbnf(schema: dict[str, Any]) -> str:
    """Compile a JSON schema (with an optional `x-copy-from` text) to GBNF.

    Raises:
        SchemaError: the converter cannot handle the schema.
    """
    body = {k: v for k, v in schema.items() if k != COPY_KEYWORD}
    text = schema.get(COPY_KEYWORD)
    if text is not None:
        body = _mark_spans(body)
    converter = _SpanConverter(  # type: ignore[no-untyped-call]
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
    )
    try:
        resolved = converter.resolve_refs(body, "input")
        converter.visit(resolved, "answer")
        grammar = str(converter.format_grammar())  # type: ignore[no-untyped-call]
    except Exception as e:  # the converter raises bare Exception/KeyError/ValueError
        raise SchemaError(f"the grammar compiler can't handle this schema: {e!r}") from e
    # The converter lets raw control characters into strings, which strict JSON forbids.
    grammar = grammar.replace('char ::= [^"\\\\]', 'char ::= [^"\\\\\\x00-\\x1F\\x7F]')
    # A leading space is allowed because prompts end in "Answer:" and " {" is one token.
    grammar = grammar.rstrip("\n") + '\nroot ::= " "? answer\n'
    if text is not None:
        grammar += "".join(f"{k} ::= {v}\n" for k, v in span_rules(str(text)).items())
    return grammar


class GrammarCache:
    """Parsed grammar samplers by schema, least recently used dropped first.

    Args:
        vocab: the model's `llama_vocab` pointer.
        size: how many schemas to keep.
    """

    def __init__(self, vocab: Any, *, size: int = 64) -> None:
        self._vocab = vocab
        self._size = size
        self._samplers: OrderedDict[str, Any] = OrderedDict()
        self.compiled = 0

    def sampler(self, schema: dict[str, Any]) -> Any:
        """A fresh grammar sampler for `schema` (free it with `llama_sampler_free`).

        Raises:
            SchemaError: the schema can't become a grammar.
        """
        key = json.dumps(schema, sort_keys=True)
        proto = self._samplers.get(key)
        if proto is None:
            gbnf = schema_to_gbnf(schema)
            proto = llama_cpp.llama_sampler_init_grammar(self._vocab, gbnf.encode("utf-8"), b"root")
            if not proto:
                raise SchemaError("the grammar compiler can't handle this schema (GBNF rejected)")
            self.compiled += 1
            log.debug("grammar_compiled", rules=gbnf.count("::="), cached=len(self._samplers))
            self._samplers[key] = proto
            if len(self._samplers) > self._size:
                _, old = self._samplers.popitem(last=False)
                llama_cpp.llama_sampler_free(old)
        else:
            self._samplers.move_to_end(key)
        return llama_cpp.llama_sampler_clone(proto)

    def close(self) -> None:
        """Free every cached sampler."""
        while self._samplers:
            _, proto = self._samplers.popitem()
            llama_cpp.llama_sampler_free(proto)
