"""Code metrics of one function from its tree-sitter tree: the third half of the defect score.

One walk over the tree (it runs per edit, beside the encoder): size, cyclomatic complexity,
nesting depth, pointer and index arithmetic, casts, calls to risky memory / string / exec /
deserialisation APIs of each language, early returns and error checks. Names are the same for
every language, so one head reads them all; a construct a language lacks counts 0.
"""

from __future__ import annotations

import re

from tree_sitter import Node

from .languages import get_parser, normalize_language

METRIC_NAMES: tuple[str, ...] = (
    "lines",
    "tokens",
    "params",
    "cyclomatic",
    "nesting",
    "loops",
    "pointer_ops",
    "index_ops",
    "index_arith",
    "casts",
    "memory_calls",
    "string_calls",
    "exec_calls",
    "deser_calls",
    "unsafe_ops",
    "early_returns",
    "error_checks",
    "gotos",
    "calls",
)

# The flawfinder-style baseline: calls to memory, string, exec and deserialisation APIs, and
# `unsafe` blocks, counted together (eval defect's `risky` column, eval flags' `risky` ranking).
RISKY_METRICS: tuple[str, ...] = (
    "memory_calls", "string_calls", "exec_calls", "deser_calls", "unsafe_ops",
)  # fmt: skip


def _w(words: str) -> set[str]:
    return set(words.split())


_DECISIONS = _w(
    "if_statement for_statement while_statement do_statement case_statement "
    "conditional_expression catch_clause except_clause elif_clause "
    "for_in_statement enhanced_for_statement switch_label switch_case "
    "ternary_expression expression_case type_case communication_case "
    "if_expression match_arm while_expression for_expression "
    "loop_expression list_comprehension for_in_clause if_clause"
)
_LOOPS = _w(
    "for_statement while_statement do_statement for_in_statement "
    "enhanced_for_statement while_expression for_expression loop_expression"
)
_NESTING = _LOOPS | _w(
    "if_statement switch_statement try_statement if_expression "
    "match_expression expression_switch_statement type_switch_statement "
    "select_statement with_statement catch_clause except_clause"
)
_CALLS = _w(
    "call_expression call method_invocation object_creation_expression "
    "new_expression macro_invocation"
)
_INDEX = _w("subscript_expression array_access subscript index_expression slice_expression")
_CASTS = _w(
    "cast_expression as_expression type_assertion type_cast_expression "
    "type_assertion_expression type_conversion_expression "
    "satisfies_expression"
)
_ARITH = _w("binary_expression binary_operator update_expression unary_expression")
_PARAMS = _w(
    "parameter_declaration formal_parameter spread_parameter identifier "
    "typed_parameter default_parameter typed_default_parameter "
    "required_parameter optional_parameter parameter self_parameter "
    "list_splat_pattern dictionary_splat_pattern "
    "variadic_parameter_declaration"
)
_PARAM_LISTS = {"parameter_list", "formal_parameters", "parameters"}
_NULLISH = re.compile(
    r"\b(?:NULL|nullptr|null|None|nil|undefined|err|errno|EOF)\b|-\s*1\b|<\s*0\b|!\s*\w"
)

# Risky APIs by language: the last name component, or the whole dotted callee for the ones that
# are only risky under their module (os.system, not any system()).
_RISKY: dict[str, dict[str, set[str]]] = {
    "c": {
        "memory": _w("memcpy memmove memset malloc calloc realloc free alloca bcopy"),
        "string": _w(
            "strcpy strcat sprintf vsprintf gets scanf sscanf fscanf strncpy "
            "strncat snprintf vsnprintf strlen strtok wcscpy wcscat lstrcpy getwd "
            "realpath"
        ),
        "exec": _w(
            "system popen execl execlp execle execv execvp execve ShellExecute "
            "WinExec CreateProcess dlopen"
        ),
        "deser": set(),
    },
    "java": {
        "memory": {"arraycopy", "allocate", "allocateDirect"},
        "string": _w(
            "format printf executeQuery executeUpdate prepareStatement createQuery "
            "createNativeQuery"
        ),
        "exec": _w("exec ProcessBuilder start loadLibrary forName invoke eval lookup"),
        "deser": _w(
            "ObjectInputStream readObject readUnshared XMLDecoder fromXML XStream "
            "readValue enableDefaultTyping Yaml"
        ),
    },
    "python": {
        "memory": _w("ctypes.memmove ctypes.memset ctypes.cast ctypes.string_at"),
        "string": _w("format execute executemany raw mark_safe render_template_string Template"),
        "exec": _w(
            "eval exec compile os.system os.popen os.spawnl os.execv "
            "subprocess.call subprocess.run subprocess.Popen "
            "subprocess.check_output subprocess.check_call commands.getoutput "
            "__import__ importlib.import_module"
        ),
        "deser": _w(
            "pickle.load pickle.loads cPickle.loads cPickle.load marshal.loads "
            "marshal.load yaml.load yaml.unsafe_load shelve.open jsonpickle.decode "
            "dill.loads torch.load joblib.load"
        ),
    },
    "javascript": {
        "memory": {"Buffer", "allocUnsafe", "allocUnsafeSlow"},
        "string": _w("write writeln insertAdjacentHTML query raw html"),
        "exec": _w(
            "eval Function exec execSync spawn spawnSync execFile execFileSync fork "
            "setTimeout setInterval runInNewContext runInThisContext require"
        ),
        "deser": {"unserialize", "deserialize", "load", "parse"},
    },
    "go": {
        "memory": _w(
            "unsafe.Pointer unsafe.Slice unsafe.String reflect.SliceHeader copy append make"
        ),
        "string": _w("fmt.Sprintf Query QueryRow Exec template.HTML template.JS"),
        "exec": _w("exec.Command exec.CommandContext syscall.Exec os.StartProcess plugin.Open"),
        "deser": _w("gob.NewDecoder xml.Unmarshal yaml.Unmarshal Decode"),
    },
    "rust": {
        "memory": _w(
            "transmute from_raw_parts copy_nonoverlapping set_len get_unchecked "
            "alloc dealloc ptr::read ptr::write from_raw"
        ),
        "string": {"format", "from_utf8_unchecked"},
        "exec": {"Command::new", "exec", "spawn", "output"},
        "deser": {"from_slice", "deserialize", "bincode::deserialize"},
    },
}
_RISKY["cpp"] = {
    k: v
    | {"cpp": {"memory": {"new", "delete", "reinterpret_cast", "unique_ptr"}}}["cpp"].get(k, set())
    for k, v in _RISKY["c"].items()
}
_RISKY["typescript"] = _RISKY["javascript"]
_RISKY["tsx"] = _RISKY["javascript"]
_DOM_SINKS = {"innerHTML", "outerHTML", "dangerouslySetInnerHTML", "srcdoc"}


def _callee(node: Node) -> str:
    """The dotted name a call calls: `os.system`, `exec`, `Runtime.getRuntime().exec` -> exec."""
    t = node.type
    if t == "method_invocation":
        name = node.child_by_field_name("name")
        obj = node.child_by_field_name("object")
        base = name.text.decode("utf-8", "replace") if name else ""
        if obj is not None and obj.type == "identifier":
            return obj.text.decode("utf-8", "replace") + "." + base
        return base
    if t in ("object_creation_expression", "new_expression"):
        typ = node.child_by_field_name("type") or node.child_by_field_name("constructor")
        return typ.text.decode("utf-8", "replace") if typ else ""
    fn = node.child_by_field_name("function") or node.child_by_field_name("macro")
    if fn is None and node.named_child_count:
        fn = node.named_children[0]
    if fn is None:
        return ""
    text = fn.text.decode("utf-8", "replace")
    return re.sub(r"\s+", "", text)[:80]


def _risk_kinds(callee: str, table: dict[str, set[str]]) -> list[str]:
    if not callee:
        return []
    callee = re.sub(r"(?:::)?<[^()]*>$", "", callee)  # Rust/C++/TS generics: f::<T>, f<T>
    last = re.split(r"[.:>]+", callee)[-1]
    tail2 = ".".join(re.split(r"[.]+", callee)[-2:])
    return [k for k, names in table.items() if callee in names or last in names or tail2 in names]


_BLANK_LINES = re.compile(r"\n[ \t]*(?=\n)")


def function_metrics(code: str, language: str) -> dict[str, float]:
    """Counts for one function's text (parsed on its own; tree-sitter recovers from snippets)."""
    lang = normalize_language(language)
    # Blank lines go first: layout must not move a score (Devign doubles every newline), and
    # tree-sitter's error recovery on foreign or broken code can depend on them.
    code = _BLANK_LINES.sub("", code)
    src = code.encode("utf-8", "surrogatepass")
    root = get_parser(lang).parse(src).root_node
    table = _RISKY.get(lang, {})
    m = dict.fromkeys(METRIC_NAMES, 0.0)
    m["lines"] = float(sum(1 for line in code.splitlines() if line.strip()))
    m["cyclomatic"] = 1.0
    body_end = _last_statement_end(root)
    params_seen = False
    # Iterative walk: (node, control-flow depth); deep trees must not hit the recursion limit.
    stack: list[tuple[Node, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        t = node.type
        if node.child_count == 0:
            if (
                t not in ("comment", "line_comment", "block_comment")
                and node.end_byte > node.start_byte
            ):
                m["tokens"] += 1
                if t in ("&&", "||", "and", "or", "?"):
                    m["cyclomatic"] += 1
                elif t == "->" and lang in ("c", "cpp"):
                    m["pointer_ops"] += 1
                elif t == "unsafe":
                    m["unsafe_ops"] += 1
            continue
        if t in _DECISIONS:
            m["cyclomatic"] += 1
        if t in _LOOPS:
            m["loops"] += 1
        if t in _NESTING:
            depth += 1
            m["nesting"] = max(m["nesting"], float(depth))
        if t in _PARAM_LISTS and not params_seen:
            params_seen = True
            m["params"] = float(sum(1 for c in node.named_children if c.type in _PARAMS))
        if t == "pointer_expression":
            m["pointer_ops"] += 1
        elif t in _INDEX:
            m["index_ops"] += 1
            idx = node.child_by_field_name("index") or node.child_by_field_name("subscript")
            if idx is None and node.named_child_count > 1:
                idx = node.named_children[-1]
            if idx is not None and idx.type in _ARITH:
                m["index_arith"] += 1
        elif t in _CASTS:
            m["casts"] += 1
        elif t in _CALLS:
            m["calls"] += 1
            for kind in _risk_kinds(_callee(node), table):
                m[f"{kind}_calls"] += 1
        elif t in ("return_statement", "return_expression"):
            if node.end_byte < body_end:
                m["early_returns"] += 1
        elif t == "goto_statement":
            m["gotos"] += 1
        elif t in ("unsafe_block", "pointer_type") and lang in ("rust", "go"):
            m["unsafe_ops"] += 1
        elif t in ("try_statement", "catch_clause", "except_clause", "defer_statement"):
            m["error_checks"] += 1
        elif t in (
            "assignment_expression",
            "augmented_assignment_expression",
            "pair",
            "jsx_attribute",
        ):
            left = node.child_by_field_name("left") or node.child_by_field_name("key")
            if left is None and node.named_child_count:
                left = node.named_children[0]
            if (
                left is not None
                and left.text.decode("utf-8", "replace").split(".")[-1] in _DOM_SINKS
            ):
                m["exec_calls"] += 1
        if t in ("if_statement", "if_expression"):
            cond = node.child_by_field_name("condition")
            if cond is not None and _NULLISH.search(cond.text.decode("utf-8", "replace")):
                m["error_checks"] += 1
        if lang in ("c", "cpp") and t == "binary_expression":
            # Arithmetic on a dereference or address (p + n where p came from &x or *q).
            op = node.child_by_field_name("operator")
            if (
                op is not None
                and op.type in ("+", "-")
                and any(
                    c.type in ("pointer_expression", "field_expression")
                    for c in node.named_children
                )
            ):
                m["pointer_ops"] += 1
        for c in reversed(node.children):
            stack.append((c, depth))
    return m


def _last_statement_end(root: Node) -> int:
    """Byte offset from which a `return` counts as the function's final one (not early)."""
    node = root
    # Down to the function's body: the last named child that holds statements.
    for _ in range(6):
        kids = [c for c in node.named_children if c.type not in ("comment", "line_comment")]
        if not kids:
            break
        body = node.child_by_field_name("body")
        node = body if body is not None else kids[-1]
        if node.type in ("compound_statement", "block", "statement_block", "function_body"):
            break
    kids = [
        c for c in node.named_children if c.type not in ("comment", "line_comment", "block_comment")
    ]
    if len(kids) == 1 and kids[0].type == "statement_list":  # Go wraps a block's statements
        kids = [c for c in kids[0].named_children if c.type != "comment"]
    return kids[-1].start_byte if kids else root.end_byte


def metric_vector(m: dict[str, float]) -> list[float]:
    """The head's inputs: log(1 + count), so one long function cannot dominate a linear head."""
    import math

    return [math.log1p(max(0.0, m.get(k, 0.0))) for k in METRIC_NAMES]
