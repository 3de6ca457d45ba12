"""`alpine-lsp` entry point: the server (--stdio / --tcp) and the subcommands.

Arguments are parsed here, not by pygls, whose own parser rejects --stdio.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand path -> module whose main(argv) -> int runs it
COMMANDS: dict[tuple[str, ...], str] = {
    ("check",): "alpine_lsp.cli.check",
    ("train", "defect"): "alpine_lsp.train.defect",
    ("train", "lexical"): "alpine_lsp.train.lexical",
    ("eval", "defect"): "alpine_lsp.train.eval_defect",
    ("eval", "clone"): "alpine_lsp.train.eval_clone",
    ("eval", "lines"): "alpine_lsp.train.eval_lines",
    ("train", "cwe"): "alpine_lsp.train.cwe",
    ("bench", "pruning"): "alpine_lsp.bench.pruning",
    ("bench", "lsp"): "alpine_lsp.bench.lsp",
    ("bench", "index"): "alpine_lsp.bench.index",
    ("bench", "soak"): "alpine_lsp.bench.soak",
    ("bench", "lines"): "alpine_lsp.bench.lines",
    ("bench", "all"): "alpine_lsp.bench.all",
}

USAGE = """usage: alpine-lsp [--stdio | --tcp HOST:PORT] [--log-file F] [-v]
       alpine-lsp check PATH... [--format text|json|sarif] [--all] [--threshold T]
                        [--fail-on-findings]
       alpine-lsp train defect --data DIR --out DIR [...]
       alpine-lsp train lexical --model DIR --data DIR [--out DIR]
       alpine-lsp eval defect|clone --model DIR --data DIR [--json]
       alpine-lsp eval lines [--model DIR] [--data-root ../shared/data] [--json F]
       alpine-lsp train cwe [--model DIR] [--data-root ../shared/data] [--out DIR]
       alpine-lsp bench pruning|lsp|index|soak|lines|all [--json]
       alpine-lsp --version"""


def _server(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="alpine-lsp", usage=USAGE)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (default)")
    mode.add_argument("--tcp", metavar="HOST:PORT", help="listen for one LSP client over TCP")
    ap.add_argument("--log-file", help="also write the server log to this file")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--version", action="store_true")
    args = ap.parse_args(argv)
    if args.version:
        from alpine_lsp import __version__

        print(f"alpine-lsp {__version__}")
        return 0
    host = port = None
    if args.tcp:
        host, _, port_s = args.tcp.rpartition(":")
        if not host or not port_s.isdigit():
            ap.error(f"--tcp wants HOST:PORT, got {args.tcp!r}")
        port = int(port_s)
    from alpine_lsp.server.app import run

    return run(tcp=(host, port) if args.tcp else None, log_file=args.log_file, verbose=args.verbose)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for key in sorted(COMMANDS, key=len, reverse=True):
        if tuple(argv[: len(key)]) == key:
            module = importlib.import_module(COMMANDS[key])
            return int(module.main(argv[len(key) :]) or 0)
    if argv and not argv[0].startswith("-"):
        group = [k for k in COMMANDS if k[0] == argv[0]]
        if group:
            subs = ", ".join(k[1] for k in group if len(k) > 1)
            print(f"alpine-lsp {argv[0]}: choose one of: {subs}", file=sys.stderr)
        else:
            print(f"alpine-lsp: unknown command {argv[0]!r}\n{USAGE}", file=sys.stderr)
        return 2
    return _server(argv)


if __name__ == "__main__":
    raise SystemExit(main())
