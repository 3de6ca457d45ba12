"""Function extraction from a tree-sitter tree, ignore comments and change detection."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from tree_sitter import Node, Tree

from .text import LineIndex


@dataclass(frozen=True, slots=True)
class Function:
    """One function or method. Positions are 0-based; columns count code points; ends exclude."""

    name: str
    kind: str  # "function" | "method" | "constructor"
    start_line: int
    start_col: int
    end_line: int
    end_col: int
    name_start_line: int
    name_start_col: int
    name_end_line: int
    name_end_col: int
    text: str
    hash: str
    ignored: bool


def function_hash(language: str, text: str) -> str:
    """Stable digest of a function's language and exact source (position independent)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(language.encode("ascii"))
    h.update(b"\0")
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def changed_functions(old: Iterable[Function], new: Iterable[Function]) -> list[Function]:
    """Functions of `new` whose exact text (hash) does not occur in `old`."""
    seen = {f.hash for f in old}
    return [f for f in new if f.hash not in seen]


_FILE_IGNORE = re.compile(r"(?:#|//|/\*|^[ \t]*\*)[^\r\n]*?alpine:[ \t]*ignore-file(?![\w-])", re.M)
_IGNORE_MARK = re.compile(r"alpine:[ \t]*ignore(?![\w-])")
_OPENERS = {"#": ("#",), "//": ("//", "/*")}


def _line_ignored(line: str, openers: tuple[str, ...]) -> bool:
    r"""`alpine: ignore` after a comment opener on the line. Linear in the line: the regex
    `(?://|/\*).*?alpine:...` it replaces rescanned the line from every `/*` (cubic on a
    minified one-line file, which froze the server)."""
    if "alpine:" not in line:
        return False
    for m in _IGNORE_MARK.finditer(line):
        if any(line.find(o, 0, m.start()) != -1 for o in openers):
            return True
    return False


def file_ignored(text: str) -> bool:
    """True when an `alpine: ignore-file` comment occurs anywhere in the file."""
    return "ignore-file" in text and _FILE_IGNORE.search(text) is not None


# Node types captured as candidate functions, per language.
_JS_FUNCTIONS = (
    "function_declaration",
    "generator_function_declaration",
    "method_definition",
    "arrow_function",
    "function_expression",
    "generator_function",
)
_FUNCTION_TYPES: dict[str, tuple[str, ...]] = {
    "c": ("function_definition",),
    "cpp": ("function_definition",),
    "java": ("method_declaration", "constructor_declaration", "compact_constructor_declaration"),
    "python": ("function_definition",),
    "javascript": _JS_FUNCTIONS,
    "typescript": _JS_FUNCTIONS,
    "tsx": _JS_FUNCTIONS,
    "go": ("function_declaration", "method_declaration"),
    "rust": ("function_item",),
}
# Named enclosing scopes that qualify a function name, and which of them hold methods.
_CLASS_SCOPES: dict[str, frozenset[str]] = {
    "c": frozenset(),
    "cpp": frozenset({"class_specifier", "struct_specifier", "union_specifier"}),
    "java": frozenset(
        {
            "class_declaration",
            "interface_declaration",
            "enum_declaration",
            "record_declaration",
            "annotation_type_declaration",
        }
    ),
    "python": frozenset({"class_definition"}),
    "javascript": frozenset({"class_declaration", "class"}),
    "typescript": frozenset({"class_declaration", "class", "abstract_class_declaration"}),
    "tsx": frozenset({"class_declaration", "class", "abstract_class_declaration"}),
    "go": frozenset(),
    "rust": frozenset({"impl_item", "trait_item"}),
}
_OTHER_SCOPES: dict[str, frozenset[str]] = {
    "cpp": frozenset({"namespace_definition"}),
    "typescript": frozenset({"internal_module"}),
    "tsx": frozenset({"internal_module"}),
    "rust": frozenset({"mod_item"}),
}
_SEPARATOR = {"c": "::", "cpp": "::", "rust": "::"}
_JS_LIKE = frozenset({"javascript", "typescript", "tsx"})
_C_NAME_TYPES = frozenset(
    {
        "identifier",
        "field_identifier",
        "qualified_identifier",
        "destructor_name",
        "operator_name",
        "template_function",
        "template_method",
        "operator_cast",
    }
)
_SIMPLE_MEMBER = re.compile(r"[\w$#.]+")
# A C/C++ "function" with one of these names is a fragment tree-sitter recovered from broken
# syntax (`else if (x) {...}` parses as a function named `if`), never a definition.
_C_KEYWORDS = frozenset(
    "if else while for do switch case default return sizeof goto break continue typedef "
    "struct union enum static extern const volatile register inline restrict auto signed "
    "unsigned alignof _Alignof _Generic _Static_assert static_assert decltype noexcept throw "
    "try catch typeid new delete co_return co_await co_yield".split()
)


@dataclass(frozen=True)
class _Info:
    """What one candidate node contributes: its own (unqualified) name and source range."""

    name: str
    name_node: Node
    start_byte: int
    end_byte: int
    kind: str | None  # set when the node type alone decides it


@dataclass(frozen=True)
class _Context:
    """What encloses a node: qualifying names (outermost first) and the innermost named scope."""

    names: tuple[str, ...]
    nearest: str | None  # "class" (class, struct, impl, trait...) or "other" (function, namespace)
    nearest_name: str | None


class _Extractor:
    def __init__(self, language: str, index: LineIndex) -> None:
        self.language = language
        self.index = index
        self.sep = _SEPARATOR.get(language, ".")
        self.class_scopes = _CLASS_SCOPES[language]
        self.other_scopes = _OTHER_SCOPES.get(language, frozenset())
        self.openers = _OPENERS["#" if language == "python" else "//"]
        self._ignored_lines: dict[int, bool] = {}  # many functions can share one line

    # -- helpers --------------------------------------------------------------------------

    def source(self, node: Node) -> str:
        index = self.index
        return index.text[index.byte_to_char(node.start_byte) : index.byte_to_char(node.end_byte)]

    def compact(self, node: Node) -> str:
        """Node text on one line, without blanks around `::` (names split over lines happen)."""
        return re.sub(r"\s*::\s*", "::", " ".join(self.source(node).split()))

    # -- per node -------------------------------------------------------------------------

    def _describe(self, node: Node, parent: Node | None, holder: Node | None) -> _Info | None:
        """`parent` and `holder` (grandparent) come from the walk: Node.parent costs O(depth)."""
        if node.child_by_field_name("body") is None:
            return None  # declarations, `= default`, abstract methods: nothing to judge
        lang = self.language
        if lang in ("c", "cpp"):
            return self._describe_c(node, parent)
        if lang in _JS_LIKE:
            return self._describe_js(node, parent, holder)
        name = node.child_by_field_name("name")
        if name is None:
            return None
        start, end = node.start_byte, node.end_byte
        kind = None
        short = self.source(name)
        if lang == "python":
            if parent is not None and parent.type == "decorated_definition":
                start = parent.start_byte  # decorators belong to the function
        elif lang == "java":
            # Methods of anonymous classes sit inside other methods; they are methods still.
            kind = "method" if node.type == "method_declaration" else "constructor"
        elif lang == "go":
            if node.type == "method_declaration":
                kind = "method"
                receiver = self._go_receiver(node)
                if receiver:
                    short = f"{receiver}.{short}"
        elif lang == "rust":
            prev = node.prev_named_sibling
            while prev is not None and prev.type == "attribute_item":
                start = prev.start_byte  # #[test] and friends belong to the function
                prev = prev.prev_named_sibling
        return _Info(short, name, start, end, kind)

    def _describe_c(self, node: Node, parent: Node | None) -> _Info | None:
        decl = node.child_by_field_name("declarator")
        # Follow declarators inward (pointer, reference, parenthesized, function) to the name;
        # `void (*signal(int, void (*)(int)))(int)` ends at `signal` this way.
        for _ in range(64):
            if decl is None or decl.type in _C_NAME_TYPES:
                break
            inner = decl.child_by_field_name("declarator")
            if inner is None:
                inner = next(
                    (c for c in decl.named_children if c.type.endswith("declarator")), None
                )
                if inner is None:
                    inner = next((c for c in decl.named_children if c.type in _C_NAME_TYPES), None)
            decl = inner
        if decl is None or decl.type not in _C_NAME_TYPES:
            return None
        short = self.compact(decl)
        if short.rsplit("::", 1)[-1] in _C_KEYWORDS:
            return None
        target = decl
        while target.type in ("qualified_identifier", "template_function", "template_method"):
            inner = target.child_by_field_name("name")
            if inner is None:
                break
            target = inner
        start = node.start_byte
        while parent is not None and parent.type == "template_declaration":
            start = parent.start_byte  # `template <...>` belongs to the function
            parent = parent.parent
        kind = None
        if decl.type == "qualified_identifier":
            # Out-of-line definitions are mostly members (`A::f`); `A::A` is a constructor.
            parts = short.split("::")
            if parts[-2]:  # not `::f`
                kind = "constructor" if parts[-1] == parts[-2].split("<")[0] else "method"
        return _Info(short, target, start, node.end_byte, kind)

    def _describe_js(self, node: Node, parent: Node | None, holder: Node | None) -> _Info | None:
        t = node.type
        if t in ("function_declaration", "generator_function_declaration"):
            name = node.child_by_field_name("name")
            if name is None:
                return None
            return _Info(self.source(name), name, node.start_byte, node.end_byte, "function")
        if t == "method_definition":
            name = node.child_by_field_name("name")
            if name is None:
                return None
            short = self.source(name)
            kind = "constructor" if short == "constructor" else "method"
            return _Info(short, name, node.start_byte, node.end_byte, kind)
        # A function expression or arrow function: named only by what it is assigned to.
        if parent is None:
            return None
        pt = parent.type
        if pt == "variable_declarator" and parent.child_by_field_name("value") == node:
            name = parent.child_by_field_name("name")
            if name is None or name.type != "identifier":
                return None  # destructuring patterns
            span = parent
            if (
                holder is not None
                and holder.type in ("lexical_declaration", "variable_declaration")
                and holder.named_child_count == 1
            ):
                span = holder  # `const f = () => ...` as a whole
            return _Info(self.source(name), name, span.start_byte, span.end_byte, "function")
        if pt == "assignment_expression" and parent.child_by_field_name("right") == node:
            left = parent.child_by_field_name("left")
            if left is None:
                return None
            if left.type == "identifier":
                name, short = left, self.source(left)
            elif left.type == "member_expression":
                name = left.child_by_field_name("property")
                if name is None:
                    return None
                short = self.compact(left)
                if not _SIMPLE_MEMBER.fullmatch(short):
                    short = self.source(name)
            else:
                return None
            span = (
                holder if holder is not None and holder.type == "expression_statement" else parent
            )
            return _Info(short, name, span.start_byte, span.end_byte, "function")
        if pt == "pair" and parent.child_by_field_name("value") == node:
            key = parent.child_by_field_name("key")
            if key is None or key.type not in ("property_identifier", "string", "number"):
                return None
            short = self.source(key).strip("'\"`")
            return _Info(short, key, parent.start_byte, parent.end_byte, "method")
        if pt in ("field_definition", "public_field_definition") and (
            parent.child_by_field_name("value") == node
        ):
            name = parent.child_by_field_name("property") or parent.child_by_field_name("name")
            if name is None:
                return None
            return _Info(self.source(name), name, parent.start_byte, parent.end_byte, "method")
        return None

    def _go_receiver(self, node: Node) -> str | None:
        receiver = node.child_by_field_name("receiver")
        param = None
        if receiver is not None:
            param = next(
                (c for c in receiver.named_children if c.type == "parameter_declaration"), None
            )
        t = param.child_by_field_name("type") if param is not None else None
        for _ in range(16):
            if t is None or t.type == "type_identifier":
                break
            if t.type == "generic_type":
                t = t.child_by_field_name("type")
            else:  # pointer_type, parenthesized_type
                t = t.named_children[0] if t.named_child_count else None
        return self.source(t) if t is not None else None

    def _scope_name(self, node: Node) -> str | None:
        t = node.type
        if self.language == "rust" and t == "impl_item":
            ty = node.child_by_field_name("type")
            for _ in range(16):
                if ty is None:
                    return None
                if ty.type == "generic_type":
                    ty = ty.child_by_field_name("type")
                elif ty.type == "scoped_type_identifier":
                    ty = ty.child_by_field_name("name")
                else:
                    break
            return self.compact(ty) if ty is not None else None
        name = node.child_by_field_name("name")
        if name is None:
            return None  # anonymous namespace or class expression
        if name.type == "template_type":
            name = name.child_by_field_name("name") or name
        return self.compact(name)

    # -- the whole tree -------------------------------------------------------------------

    def scope_context(self, node: Node, outer: _Context) -> _Context:
        """The context inside a class/namespace/impl scope node."""
        t = node.type
        name = self._scope_name(node)
        names = (*outer.names, name) if name else outer.names
        return _Context(names, "class" if t in self.class_scopes else "other", name)

    def _line_ignored(self, line: int) -> bool:
        verdict = self._ignored_lines.get(line)
        if verdict is None:
            verdict = self._ignored_lines[line] = _line_ignored(self.index.line(line), self.openers)
        return verdict

    def function(
        self, node: Node, parent: Node | None, holder: Node | None, outer: _Context
    ) -> tuple[Function | None, _Context]:
        """The Function for a candidate node, and the context its nested functions see."""
        info = self._describe(node, parent, holder)
        if info is not None and self.language == "c" and outer.nearest == "other":
            info = None  # C has no nested functions: a fragment of a split statement
        if info is None:
            return None, outer  # anonymous: nested functions are named as if it were absent
        kind = info.kind
        if kind is None:
            if outer.nearest == "class":
                cpp_ctor = self.language == "cpp" and outer.nearest_name == info.name
                kind = "constructor" if cpp_ctor else "method"
            else:
                kind = "function"
        names = (*outer.names, info.name)
        index = self.index
        start = index.snap(index.byte_to_char(info.start_byte))
        end = index.snap(index.byte_to_char(info.end_byte))
        name_start = index.position(index.snap(index.byte_to_char(info.name_node.start_byte)))
        name_end = index.position(index.snap(index.byte_to_char(info.name_node.end_byte)))
        start_pos = index.position(start)
        end_pos = index.position(end)
        text = index.text[start:end]
        ignored = any(
            self._line_ignored(line) for line in {start_pos[0] - 1, start_pos[0], name_start[0]}
        )
        function = Function(
            name=self.sep.join(names),
            kind=kind,
            start_line=start_pos[0],
            start_col=start_pos[1],
            end_line=end_pos[0],
            end_col=end_pos[1],
            name_start_line=name_start[0],
            name_start_col=name_start[1],
            name_end_line=name_end[0],
            name_end_col=name_end[1],
            text=text,
            hash=function_hash(self.language, text),
            ignored=ignored,
        )
        return function, _Context(names, "other", info.name)


def functions_from_tree(tree: Tree, language: str, index: LineIndex) -> list[Function]:
    """All named functions in `tree`, in document order (outer before nested)."""
    return [f for f, _ in functions_with_spans(tree, language, index)]


Span = tuple[int, int]  # (start_byte, end_byte) of a top-level node


class TopLevel:
    """Extraction one top-level node at a time: functions never span two of them, so an edit
    leaves the functions of the nodes it does not touch alone (ParsedDocument reuses them)."""

    def __init__(self, tree: Tree, language: str, index: LineIndex) -> None:
        self.root = tree.root_node
        self.extractor = _Extractor(language, index)
        self.function_types = frozenset(_FUNCTION_TYPES[language])
        self.scope_types = _CLASS_SCOPES[language] | _OTHER_SCOPES.get(language, frozenset())
        # A root that is itself a function or scope has no top-level split (no such grammar
        # today); then the root is the one node.
        t = self.root.type
        self.split = t not in self.function_types and t not in self.scope_types

    def nodes(self) -> list[Node]:
        return self.root.children if self.split else [self.root]

    def functions(self, node: Node) -> list[Function]:
        top = _Context((), None, None)
        stack = [(None, top), (self.root, top)] if self.split else [(None, top)]
        return _walk(node.walk(), stack, self.extractor, self.function_types, self.scope_types)


def functions_with_spans(
    tree: Tree, language: str, index: LineIndex
) -> list[tuple[Function, Span]]:
    """Functions in document order, each with the span of the top-level node it lies in."""
    top = TopLevel(tree, language, index)
    return [(f, (n.start_byte, n.end_byte)) for n in top.nodes() for f in top.functions(n)]


def _walk(cursor, stack, extractor, function_types, scope_types) -> list[Function]:
    # A TreeCursor walk is linear; a Query was as fast on normal code but went quadratic on
    # ERROR nodes with many children (e.g. 20k unmatched brackets), and Node.parent is O(depth).
    # `stack`: one entry per ancestor of the cursor's node: (ancestor, context its children see).
    found: list[Function] = []
    while True:
        node = cursor.node
        assert node is not None
        parent, context = stack[-1]
        t = node.type
        inner = context
        if t in function_types:
            holder = stack[-2][0] if len(stack) > 1 else None
            function, inner = extractor.function(node, parent, holder, context)
            if function is not None:
                found.append(function)
        elif t in scope_types:
            inner = extractor.scope_context(node, context)
        if cursor.goto_first_child():
            stack.append((node, inner))
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                return found
            stack.pop()
