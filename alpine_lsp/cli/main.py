"""`alpine-lsp` entry point: the server (--stdio / --tcp) and the subcommands.

Arguments are parsed here, not by pygls, whose own parser rejects --stdio.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from alpine_lsp.evalkit.errors import CommandError

# subcommand path -> module whose main(argv) -> int runs it
COMMANDS: dict[tuple[str, ...], str] = {
    ("check",): "alpine_lsp.cli.check",
    ("learn",): "alpine_lsp.history.learn",
    ("train", "defect"): "alpine_lsp.train.defect",
    ("train", "lexical"): "alpine_lsp.train.lexical",
    ("train", "fused"): "alpine_lsp.train.fusion_train",
    ("cache", "features"): "alpine_lsp.train.feature_cache",
    ("eval", "defect"): "alpine_lsp.train.eval_defect",
    ("eval", "clone"): "alpine_lsp.train.eval_clone",
    ("eval", "lines"): "alpine_lsp.train.eval_lines",
    ("eval", "encoder"): "alpine_lsp.train.eval_encoder",
    ("eval", "flags"): "alpine_lsp.train.eval_flags",
    ("train", "cwe"): "alpine_lsp.train.cwe",
    ("bench", "pruning"): "alpine_lsp.bench.pruning",
    ("bench", "lsp"): "alpine_lsp.bench.lsp",
    ("bench", "index"): "alpine_lsp.bench.index",
    ("bench", "soak"): "alpine_lsp.bench.soak",
    ("bench", "edits"): "alpine_lsp.bench.edits",
    ("bench", "memory"): "alpine_lsp.bench.memory",
    ("bench", "lines"): "alpine_lsp.bench.lines",
    ("bench", "hostile"): "alpine_lsp.bench.hostile",
    ("bench", "all"): "alpine_lsp.bench.all",
}

USAGE = """usage: alpine-lsp [--stdio | --tcp HOST:PORT] [--log-level L] [--log-file F] [-v]
       alpine-lsp check PATH... [--format text|json|sarif] [--all] [--threshold T]
                        [--fail-on-findings]
       alpine-lsp learn [PATH] [--since DATE] [--until DATE] [--evaluate] [--json]
       alpine-lsp train defect --data DIR --out DIR [...]
       alpine-lsp train lexical --model DIR --data DIR [--out DIR]
       alpine-lsp cache features --out DIR [--sources ...]   (encoder outputs, once)
       alpine-lsp train fused --features DIR --out MODEL_DIR [--report F]
       alpine-lsp eval defect|clone --model DIR --data DIR [--json]
       alpine-lsp eval defect --sources all --features DIR [--report F]
       alpine-lsp eval lines [--model DIR] [--data-root DIR] [--json F]
       alpine-lsp eval encoder --data DIR --model NAME=DIR... [--json] [--out F]
       alpine-lsp eval flags sample REPORT.json... --out DIR | tally DIR  (blind reading)
       alpine-lsp train cwe [--model DIR] [--data-root DIR] [--out DIR]
       alpine-lsp bench pruning|lsp|index|memory|soak|edits|lines|hostile|all [--json]
       alpine-lsp --version"""


def _server(argv: list[str]) -> int:
    # argparse writes "usage: " itself.
    ap = argparse.ArgumentParser(prog="alpine-lsp", usage=USAGE.removeprefix("usage: "))
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (default)")
    mode.add_argument("--tcp", metavar="HOST:PORT", help="listen for one LSP client over TCP")
    ap.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="lowest level sent to the client as window/logMessage (default: info)",
    )
    ap.add_argument(
        "--log-file", metavar="FILE", help="also write the log to FILE (appended, same level)"
    )
    ap.add_argument(
        "-v", "--verbose", action="store_true", help="same as --log-level debug (with pygls)"
    )
    ap.add_argument("--version", action="store_true", help="print the version and exit")
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
    if args.log_file:
        try:  # a fatal start-up error: said on stderr, before any client is connected
            open(args.log_file, "a", encoding="utf-8").close()
        except OSError as e:
            print(f"alpine-lsp: cannot write --log-file {args.log_file}: {e}", file=sys.stderr)
            return 2
    from alpine_lsp.server.app import run

    return run(
        tcp=(host, port) if args.tcp else None,
        log_file=args.log_file,
        verbose=args.verbose,
        log_level=args.log_level,
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for key in sorted(COMMANDS, key=len, reverse=True):
        if tuple(argv[: len(key)]) == key:
            module = importlib.import_module(COMMANDS[key])
            try:
                return int(module.main(argv[len(key) :]) or 0)
            except CommandError as e:
                # Raised for bad input below cli/ and said only here: the message on stderr
                # and exit status e.code; status 1 exactly as sys.exit(message) says it.
                if e.code == 1:
                    raise SystemExit(str(e)) from None
                print(str(e), file=sys.stderr)
                return e.code
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
