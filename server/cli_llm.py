"""goldloop LLM pre-annotation commands: `llm eval` (score an OpenAI-compatible model on the test split, gate it) and
`llm label` (pre-label the pool once it is trusted). The server comes from GOLDLOOP_LLM_URL / GOLDLOOP_LLM_MODEL /
GOLDLOOP_LLM_API_KEY (docs/llm.md); the key is never printed."""
from __future__ import annotations

import json

import click

from .cli_base import data_dir_option, settings_for

_server_options = [
    click.option("--url", default=None, help="The server's base URL up to /v1 (default $GOLDLOOP_LLM_URL)."),
    click.option("--model", default=None, help="The model name the server knows (default $GOLDLOOP_LLM_MODEL)."),
    click.option("--few-shot", "k", type=click.IntRange(min=0), default=3, show_default=True,
                 help="Train-split gold documents most like each document shown as examples."),
    click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True, help="Requests in flight."),
    click.option("--max-tokens", type=click.IntRange(min=1), default=512, show_default=True, help="Tokens per answer."),
    click.option("--timeout", type=click.FloatRange(min=1), default=120.0, show_default=True, help="Seconds per request."),
    click.option("--token-budget", type=click.IntRange(min=0), default=0, show_default=True,
                 help="Prompt + completion tokens this run may use (0: no limit); documents past it are dropped."),
]


def server_options(f):
    for option in reversed(_server_options):
        f = option(f)
    return f


def _provider(url, model, concurrency, max_tokens, timeout, token_budget):
    from .llm.provider import LLMConfig, Provider

    return Provider(LLMConfig.from_env(url=url, model=model, concurrency=concurrency, max_tokens=max_tokens, timeout=timeout,
                                       token_budget=token_budget))


@click.group()
def llm():
    """LLM pre-annotation through an OpenAI-compatible server, trusted only after it is scored against gold."""


@llm.command("eval")
@data_dir_option
@click.argument("project")
@server_options
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Trust the LLM unless its primary metric is below the serving version's by more than this.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def eval_(data_dir, project, url, model, k, concurrency, max_tokens, timeout, token_budget, tolerance, as_json):
    """Score the LLM on the project's test split like a model version, gate it against the serving version, record it."""
    from .llm.evaluate import run_llm_eval
    from .locks import EXIT_ROUND_RUNNING, RoundRunning
    from .project import ProjectContext

    provider = _provider(url, model, concurrency, max_tokens, timeout, token_budget)
    ctx = ProjectContext.open(settings_for(data_dir), project)
    try:
        rec = run_llm_eval(ctx, provider, k=k, tolerance=tolerance, progress=not as_json)
    except RoundRunning as exc:
        click.echo(f"Error: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_ROUND_RUNNING) from None
    if as_json:
        click.echo(json.dumps(rec, indent=2, default=str))
    else:
        stats = json.loads(rec.get("llm_stats") or "{}")
        primary = rec.get("primary")
        serving = rec.get("serving_primary")
        click.echo(f"{rec['version']}: {rec['status']} — {rec.get('decision')}")
        click.echo(f"LLM {rec.get('llm_model')} prompt {str(rec.get('prompt_hash'))[:8]}: primary "
                   f"{'-' if primary is None else f'{primary:.4f}'} vs serving {'-' if serving is None else f'{serving:.4f}'}; "
                   f"asked {stats.get('asked', 0)}, answered {stats.get('answered', 0)}, malformed {stats.get('malformed', 0)}, "
                   f"dropped {stats.get('dropped', 0)}, tokens {stats.get('prompt_tokens', 0)}+{stats.get('completion_tokens', 0)}, "
                   f"{stats.get('seconds', 0)} s")
    if rec["status"] in ("failed", "not started"):
        raise click.exceptions.Exit(1)


@llm.command("label")
@data_dir_option
@click.argument("project")
@server_options
@click.option("--force", is_flag=True, help="Pre-label even though `goldloop llm eval` has not trusted this model and prompt.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many pool documents this run.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def label(data_dir, project, url, model, k, concurrency, max_tokens, timeout, token_budget, force, limit, as_json):
    """Pre-label the unlabeled pool with the LLM (resumable: answers are cached, posted tasks remembered)."""
    from .llm.label import label_pool
    from .project import ProjectContext

    provider = _provider(url, model, concurrency, max_tokens, timeout, token_budget)
    ctx = ProjectContext.open(settings_for(data_dir), project)
    out = label_pool(ctx, provider, k=k, force=force, limit=limit, progress=not as_json)
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
        return
    c, s = out["counts"], out["stats"]
    click.echo(f"{out['model_version']}: {c.get('predictions', 0)} predictions written ({c.get('cached', 0)} from the cache, "
               f"{s['asked']} asked, {s['dropped']} dropped {s['dropped_reasons'] or ''}); {c.get('already_posted', 0)} of "
               f"{c.get('pool', 0)} pool tasks had them already")


COMMANDS = (llm,)
