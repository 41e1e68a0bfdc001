"""Command line: `python -m app course|train|eval|sample|score|poem|serve|worker`.

Every user error (bad option, unusable file, unknown model) ends with exit code 2 and one line
on stderr; results go to stdout, progress to stderr. Output is UTF-8 whatever the locale, a
closed pipe (`... | head`) ends the command quietly, and no library warning reaches the terminal.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import NoReturn

from threadpoolctl import threadpool_limits

from .charlm import course
from .charlm import resume as resume_file
from .charlm.beam import most_likely_names
from .charlm.casing import CASE_CHOICES
from .charlm.checkpoint import check_target, save
from .charlm.errors import CharLMError, InvalidInput, TrainingCancelled
from .charlm.evaluate import evaluate
from .charlm.sample import MODES, NameOptions, PoemOptions, continue_text, sample_names
from .charlm.score import reference_set, score_names
from .charlm.store import ModelStore, check_model_name
from .charlm.textnorm import clean_text, read_text_file
from .charlm.train import DEFAULTS, SIZED_OPTIONS, Progress, TrainConfig, check_options, resume, train
from .locations import default_store_dir

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `yes | head` reports for `yes`


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line (no usage dump) with exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _store() -> ModelStore:
    """The service's store: DINO_STORE_DIR, else model_store/ in a checkout or the per-user data directory."""
    return ModelStore(os.environ.get("DINO_STORE_DIR") or default_store_dir())


def duration(seconds: float | None) -> str:
    """`1h 02m`, `3m 05s` or `42s`, for people reading progress."""
    if seconds is None:
        return "?"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


class _ProgressPrinter:
    """Progress lines on stderr: the plan, then at most one line every EVERY seconds (a list of ten
    names runs hundreds of epochs a second) and always the last epoch."""

    EVERY = 2.0

    def __init__(self) -> None:
        self.printed_at = -self.EVERY

    def __call__(self, report: Progress) -> None:
        last = report.event == "epoch" and report.steps is not None and report.step >= report.steps
        if report.event != "plan" and not last and report.seconds - self.printed_at < self.EVERY:
            return
        self.printed_at = report.seconds
        if report.phase == "cross-validation" and report.event == "plan":
            line = ("cross-validating the number of epochs (folds of the list, then the run): expected to take "
                    f"about {duration(report.eta_seconds)}")
        elif report.phase == "cross-validation":
            line = (f"cross-validating  step {report.step:,}/{report.steps:,} ({report.fraction:.0%}): about "
                    f"{duration(report.eta_seconds)} left")
        elif report.event == "plan":
            plan = (f"{report.epochs} epochs, {report.steps:,} steps" if report.steps
                    else "until the time budget is spent")
            line = f"training {plan}: expected to take about {duration(report.eta_seconds)}"
        else:
            steps = f"/{report.steps:,}" if report.steps else ""
            loss = f"{report.train_loss:.4f}" if report.train_loss is not None else "-"
            val = f"  val {report.val_loss:.4f}" if report.val_loss is not None else ""
            of = f"/{report.epochs}" if report.steps else ""
            where = f"epoch {report.epoch}{of}" if report.event == "epoch" else f"epoch {report.epoch + 1}{of} ..."
            line = (f"{where}  step {report.step:,}{steps} ({report.fraction:.0%})  train {loss}{val}  "
                    f"{report.chars_per_second:,.0f} chars/s  {duration(report.seconds)} elapsed, "
                    f"{duration(report.eta_seconds)} left")
        print(line, file=sys.stderr, flush=True)


def cmd_course(args: argparse.Namespace) -> None:
    if args.iterations < 1:
        raise InvalidInput("--iterations must be at least 1")
    data = clean_text(read_text_file(args.data), f"data file {args.data}").lower()
    char_to_ix, ix_to_char = course.dino_vocab()
    for number, line in enumerate(data.split("\n"), start=1):
        bad = sorted(set(line.strip()) - set(char_to_ix))
        if bad:
            raise InvalidInput(f"data file {args.data} line {number}: {bad[0]!r} is not a letter a-z; the course "
                               "model knows only a-z, one name per line")
    course.model(data, ix_to_char, char_to_ix, num_iterations=args.iterations)


@contextmanager
def _stop_on_signals() -> Iterator[list[int]]:
    """While training: the first SIGINT or SIGTERM asks for a clean stop (a checkpoint, then exit
    130) instead of killing the process; a second Ctrl-C interrupts at once."""
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield received
        return
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_train(args: argparse.Namespace) -> None:
    store = _store()
    if args.resume is None and args.data is None:
        raise InvalidInput("train needs --data FILE (or --resume DIR to continue a stopped run)")
    defaults = {f.name: f.default for f in fields(TrainConfig) if hasattr(args, f.name)}
    options = {name: getattr(args, name) for name in defaults}
    given = [f"--{name.replace('_', '-')}" for name, value in options.items() if value != defaults[name]]
    if args.resume is not None and (args.data is not None or given):
        ignored = ", ".join((["--data"] if args.data is not None else []) + given)
        raise InvalidInput(f"--resume continues a run with its own data and options; leave out {ignored}")
    if args.name is not None and store.is_builtin(check_model_name(args.name)):
        raise InvalidInput(f"{args.name!r} is a built-in model and cannot be replaced; choose another --name")
    out = args.resume or args.out  # where the resumable checkpoint lives (none for --name)
    if args.out is not None and resume_file.exists(args.out):
        raise InvalidInput(f"{args.out} holds a stopped run: continue it with --resume {args.out}, "
                           f"or delete {args.out}/{resume_file.RESUME_FILE} to start again")
    if args.out is not None:
        check_target(args.out)
    with _stop_on_signals() as received:
        try:
            if args.resume is not None:
                model = resume(out, on_progress=_ProgressPrinter(), should_stop=lambda: bool(received))
            else:
                config = TrainConfig(**options)
                base = store.load(args.init_from) if args.init_from else None
                check_options(config, base)  # before reading any data
                text = read_text_file(args.data)
                model = train(text, config, on_progress=_ProgressPrinter(), should_stop=lambda: bool(received),
                              checkpoint_dir=out, base=base)
        except TrainingCancelled:
            again = (f": continue with python -m app train --resume {out}" if out and resume_file.exists(out) else
                     ": nothing was kept (a short list's cross-validation, or a run without --out, has no "
                     "checkpoint); run the same command again")
            raise TrainingCancelled(f"interrupted{again}") from None
    model.meta["command"] = "python -m app " + " ".join(sys.argv[1:] if args.argv is None else args.argv)
    if args.name is None:
        path, stored = save(model, out), {}
    else:  # a new version of a user model, exactly as POST /train makes it
        version = store.add_version(args.name, model)
        path, stored = store.model_dir(args.name, version), {"model": args.name, "version": version}
    summary = {"out": str(path), **stored, "kind": model.kind, "arch": model.config.arch,
               **model.meta["metrics"], **{k: model.meta["training"][k] for k in ("epochs_run", "seconds")}}
    print(json.dumps(summary))


def cmd_eval(args: argparse.Namespace) -> None:
    model = _store().load(args.model)
    result = evaluate(model, read_text_file(args.data))
    print(json.dumps(result.__dict__))


def cmd_sample(args: argparse.Namespace) -> None:
    from .novelty import novelty  # rapidfuzz is loaded only when sampling

    model = _store().load(args.model)
    exclude_training, reject = novelty(model, args.novel)
    opts = NameOptions(count=args.count, temperature=args.temperature, top_k=args.top_k, seed=args.seed,
                       prefix=args.prefix, min_length=args.min_length, max_length=args.max_length,
                       novel=exclude_training, suffix=args.suffix, contains=args.contains, exclude=args.exclude,
                       page=args.page, mode=args.mode)
    if args.mode == "beam":
        print("\n".join(f"{name}\t{lp:.4f}" for name, lp in most_likely_names(model, opts, reject=reject)))
    else:
        print("\n".join(sample_names(model, opts, reject=reject)))


def cmd_score(args: argparse.Namespace) -> None:
    model = _store().load(args.model)
    reference = reference_set(model)
    for s in score_names(model, args.names):
        print(json.dumps({"name": s.name, "log_prob": s.log_prob, "nll_per_char": s.nll_per_char,
                          "percentile": s.percentile, "reference": reference}, ensure_ascii=False))


def cmd_poem(args: argparse.Namespace) -> None:
    model = _store().load(args.model)
    opts = PoemOptions(prompt=args.prompt, length=args.length, lines=args.lines,
                       temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    print(args.prompt + continue_text(model, opts))


def _check_port_free(host: str, port: int) -> None:
    """Fail in one line, with the remedy, when the address is taken (uvicorn would log a traceback-ish error)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        socket.create_server((host, port), family=family).close()  # SO_REUSEADDR, as uvicorn binds
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise InvalidInput(f"port {port} is already in use on {host} (another server?): stop it, or choose "
                               f"another port with --port N (make run: PORT=N make run)") from None
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def cmd_serve(args: argparse.Namespace) -> None:
    from .api.serve import serve  # the web stack is imported only when serving
    from .api.settings import load_settings

    settings = load_settings(start_worker=False) if args.no_worker else load_settings()
    _check_port_free(args.host, args.port)
    shown = "localhost" if args.host in ("0.0.0.0", "::", "") else args.host
    where = " (all interfaces)" if shown != args.host else ""
    role = "" if settings.start_worker else " without a training worker"
    print(f"Dinosaurus serving{role} on http://{shown}:{args.port}/{where}; API docs at /docs; Ctrl+C stops it",
          flush=True)
    serve(settings, args.host, args.port)


def cmd_worker(args: argparse.Namespace) -> None:
    from .api.settings import load_settings
    from .api.worker import run

    settings = load_settings()
    print(f"Dinosaurus training worker on {settings.jobs_url_shown}; Ctrl+C stops it (its job is re-queued)",
          flush=True)
    run(settings)


def _sampling_options(p: argparse.ArgumentParser, greedy: str) -> None:
    p.add_argument("--temperature", type=float, default=1.0,
                   help=f"below 1: safer, above 1: wilder (0-10], default 1; below 0.001: greedy, {greedy}")
    p.add_argument("--top-k", type=int, help="draw only from the k likeliest characters")
    p.add_argument("--seed", type=int, help="same seed, same output")


def build_parser() -> argparse.ArgumentParser:
    prog = "dinosaurus" if Path(sys.argv[0]).name == "dinosaurus" else "python -m app"  # the installed command
    parser = _Parser(prog=prog, description="Dinosaurus: character-level language models in NumPy.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("course", help="run the course assignment's RNN and print its report")
    p.add_argument("--data", default="data/dinos.txt", help="name list (default: data/dinos.txt)")
    p.add_argument("--iterations", type=int, default=35000, help="SGD steps (default: 35000)")
    p.set_defaults(func=cmd_course)

    p = sub.add_parser("train", help="train a model with the fast trainer")
    p.add_argument("--data", help="UTF-8 text: one name per line, or a text stream (required unless --resume)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", help="model directory to write; a resumable checkpoint is kept there while training")
    out.add_argument("--name", help="store as the next version of user model NAME (as POST /train does)")
    out.add_argument("--resume", metavar="DIR", help="continue the run stopped in DIR (Ctrl-C, SIGTERM, a crash) "
                     "with its own data and options, and write the model there")
    p.add_argument("--init-from", metavar="MODEL", help="fine-tune: start from this names model (store name or "
                   "directory) instead of random weights; new characters start as their nearest known one")
    p.add_argument("--kind", choices=["names", "text"], default="names")
    p.add_argument("--arch", choices=["rnn", "lstm"], default="lstm")
    for flag, kind, help_text in [
        ("--hidden", int, "hidden units per layer (of the whole network: members split them)"),
        ("--layers", int, "stacked recurrent layers"),
        ("--members", int, "names: an ensemble of this many networks trained side by side, sampled as one"),
        ("--dropout", float, "dropout on each layer's output"),
        ("--weight-drop", float, "DropConnect on the recurrent weights"),
        ("--ema", float, "decay of the weights' moving average (0: off)"),
        ("--epochs", int, "passes over the data (unlimited with --time-budget)"),
        ("--batch-size", int, "names (or text windows) per step"),
        ("--lr", float, "peak Adam learning rate (cosine decay)"),
        ("--weight-decay", float, "decoupled weight decay on matrices"),
        ("--window", int, "text: characters per truncated-BPTT window"),
        ("--val-fraction", float, "share held out for validation (best weights kept)"),
    ]:
        key = flag[2:].replace("-", "_")
        defaults = ", ".join(f"{k} {v[key]:g}" for k, v in DEFAULTS.items() if key in v)
        sized = "; names lists under 1,000 or over 2,000 names: by size" if key in SIZED_OPTIONS else ""
        p.add_argument(flag, type=kind, help=f"{help_text} (default: {defaults}{sized})")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same weights")
    p.add_argument("--time-budget", type=float, help="stop after this many seconds, keep the best")
    p.add_argument("--case", choices=CASE_CHOICES, default="auto",
                   help="auto: fold case when 95%% of the names are lower case or Title, else keep it (default)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="negative log-likelihood per character on a data file")
    p.add_argument("--model", required=True, help="model name in the store, or a model directory")
    p.add_argument("--data", required=True)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sample", help="generate names")
    p.add_argument("--model", default="dinos", help="names model: store name or directory (default: dinos)")
    p.add_argument("--count", type=int, default=7, help="how many distinct names (1-1000, default 7)")
    _sampling_options(p, "one name only")
    p.add_argument("--prefix", default="", help="every name starts with this")
    p.add_argument("--suffix", default="", help="every name ends with this")
    p.add_argument("--contains", default="", help="every name contains this")
    p.add_argument("--exclude", default="", help="characters never to use")
    p.add_argument("--min-length", type=int, help="shortest name, prefix included (default: the shortest "
                                                  "training name)")
    p.add_argument("--max-length", type=int, default=40,
                   help="longest name (1-100, default 40); a name that would be longer is drawn again, never cut")
    p.add_argument("--novel", nargs="?", const="true", default="false", choices=["false", "true", "strict"],
                   help="only names absent from the training list; =strict: nor within one edit of one")
    p.add_argument("--page", type=int, default=1, help="page of --count names (with --seed: no repeats across "
                                                       "pages; page x count <= 5000)")
    p.add_argument("--mode", choices=MODES, default="sample",
                   help="beam: the count most probable names, each with its log-probability (tab-separated)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("score", help="log-likelihood and typicality of names (one JSON object per name)")
    p.add_argument("--model", default="dinos", help="names model: store name or directory (default: dinos)")
    p.add_argument("names", nargs="+", metavar="NAME", help="names to score (1-100)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("poem", help="continue a prompt in the voice of the sonnets")
    p.add_argument("--model", default="shakespeare", help="text model (default: shakespeare)")
    p.add_argument("--prompt", default="", help="first words, up to 200 characters (may be empty)")
    p.add_argument("--length", type=int, default=400, help="characters to add (1-2000, default 400)")
    p.add_argument("--lines", type=int, help="stop after this many complete lines instead (1-200; 14: a sonnet), "
                                             "and at most 100 characters per line asked, in all")
    _sampling_options(p, "the likeliest character every time")
    p.set_defaults(func=cmd_poem)

    p = sub.add_parser("serve", help="run the HTTP service")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: all)")
    p.add_argument("--port", type=int, default=os.environ.get("DINO_PORT", "8000"),
                   help="TCP port (default: $DINO_PORT or 8000)")
    p.add_argument("--no-worker", action="store_true",
                   help="an API replica only: jobs are trained by `worker` processes sharing the database")
    p.set_defaults(func=cmd_serve)

    worker_help = ("run a training worker (any number, on any machine that reaches DINO_DATABASE_URL "
                   "and the store)")
    p = sub.add_parser("worker", help=worker_help, description=worker_help + ". It reads DINO_DATABASE_URL "
                       "(default: the SQLite file in the store), DINO_STORE_DIR and the other DINO_* settings; "
                       "Ctrl+C or SIGTERM gives its job back to the queue.")
    p.set_defaults(func=cmd_worker)
    return parser


BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _blas_threads() -> int | None:
    """One BLAS thread unless the environment sets a count (None: leave BLAS as configured). Our
    matrix products are small (a batch of 16 names by 1,024 gate columns): threads do not speed
    them up, and on a machine whose cores are busy OpenBLAS's spinning threads made an epoch of the
    default network 20 times slower (54 against 2.8 CPU s, AMD EPYC, 2 cores shared)."""
    return None if any(os.environ.get(v) for v in BLAS_THREAD_VARIABLES) else 1


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):  # a real text stream (not a test's capture object)
            stream.reconfigure(encoding="utf-8", errors="replace")
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    tokens = list(argv if argv is not None else sys.argv[1:])
    flags = [t.split("=", 1)[0] for t in tokens[: tokens.index("--") if "--" in tokens else None] if t.startswith("--")]
    repeated = [f for f in dict.fromkeys(flags) if flags.count(f) > 1]
    if repeated:  # argparse keeps the last; which one was meant is not guessed (HTTP refuses repeats too)
        print(f"{parser.prog}: error: {', '.join(repeated)} given more than once; give each option once",
              file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings(), threadpool_limits(_blas_threads()):
            warnings.simplefilter("ignore")  # library warnings are for developers, not for the terminal
            args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): say nothing, and keep Python from failing again on
        # its final flush of stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except TrainingCancelled as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 130
    except CharLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the disk or the file system said no (full, read-only, vanished)
        print(f"error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
