"""goldloop data commands: import, export, score (documents in, gold datasets out, an LLM's answers scored)."""
from __future__ import annotations

from pathlib import Path

import click

from .cli_base import data_dir_option, open_db, settings_for


@click.command("import")
@data_dir_option
@click.argument("project")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--min-chars", type=int, default=None, help="Drop documents shorter than this (after cleaning).")
@click.option("--mask-pii/--no-mask-pii", default=None,
              help="De-identify: names, IDs, phones, e-mails, dates, record numbers… → [NAME], [ID] … (default: per schema).")
@click.option("--pseudonymize", is_flag=True, help="With masking: consistent fake names per document instead of [NAME].")
@click.option("--shift-dates", is_flag=True, help="With masking: move every date of a document by one offset (±1-365 days, per document).")
@click.option("--text-column", default=None, help="CSV/JSONL field holding the text (default: the project's text field).")
@click.option("--no-predict", is_flag=True, help="Do not pre-annotate the new tasks.")
@click.option("--review-pii", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              help="With masking: write the spans it could not decide on (left unmasked) to this JSON Lines file for a "
                   "person to check. The file holds personal data by design (the original text around each span): "
                   "written with mode 0600, never logged; keep it private and delete it once reviewed.")
def import_(data_dir, project, paths, min_chars, mask_pii, pseudonymize, shift_dates, text_column, no_predict,
            review_pii):
    """Import documents (.jsonl, .json, .csv, .txt files or folders) into a project: clean, deduplicate, pre-annotate.

    PROJECT is a Label Studio project id or a schema name (e.g. medical_records).
    """
    from . import ls_client
    from .importer import import_files
    from .starters import after_import

    settings = settings_for(data_dir)
    db = open_db(settings, create=True)
    client = ls_client.connect(settings, db)
    outcome = import_files(
        client, settings, db, project, list(paths), min_chars=min_chars, mask_pii=mask_pii, pseudonymize=pseudonymize,
        shift_dates=shift_dates, text_column=text_column,
        pre_annotate=not no_predict, review_pii=review_pii,
    )  # fmt: skip
    for line in outcome.summary_lines():
        click.echo(line)
    starter = after_import(settings, db, outcome.project_id)  # a missing or failed starter set trains now
    if starter:
        click.echo(f"starter set: {starter}")


@click.command()
@data_dir_option
@click.argument("project")
@click.option("--format", "formats", default="jsonl,conll,hf,csv", show_default=True, help="Comma-separated: jsonl, conll, hf, csv, chat, instruction, preference.")
@click.option("--resolve", type=click.Choice(["majority", "latest", "ground-truth"]), default="majority", show_default=True, help="How conflicting annotations are resolved.")
@click.option("--only-reviewed", is_flag=True, help="Only tasks with an accepted review or a ground-truth annotation.")
@click.option("--check-labels", is_flag=True, help="Flag likely mislabeled documents (confident learning).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("exports"), show_default=True, help="Root folder of the versioned exports.")
@click.option("--template", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="jinja2 instruction template of the LLM formats [default: schemas/<schema>.prompt.md, else the built-in one].")
@click.option("--max-tokens", type=click.IntRange(min=16), default=2048, show_default=True, help="LLM formats: longer documents are cut at sentence boundaries.")
@click.option("--tokenizer", default=None, help="LLM formats: Hugging Face tokenizer (id or path, loaded offline) counting tokens [default: the encoder].")
def export(data_dir, project, formats, resolve, only_reviewed, check_labels, out, template, max_tokens, tokenizer):
    """Export a project's labels as a versioned gold dataset."""
    from . import __version__, ls_client, store
    from .export import ExportOptions, ProjectInfo, export_dataset, find_template
    from .project import ProjectContext
    from .schema_files import schemas_dir

    ctx = ProjectContext.open(settings_for(data_dir), project)
    proj, client = ctx.project, ctx.client
    row = store.get_project(ctx.db, ctx.pid) or {}
    info = ProjectInfo(id=ctx.pid, slug=ctx.slug, title=proj.title, label_config=proj.label_config)
    fmts = [f.strip() for f in formats.split(",") if f.strip()]
    options = ExportOptions(out, formats=fmts, resolve=resolve, only_reviewed=only_reviewed, check_labels=check_labels,
                            goldloop_version=__version__, total=proj.task_number, max_tokens=max_tokens, tokenizer=tokenizer,
                            template=find_template(row.get("schema_name"), schemas_dir(), template))
    res = export_dataset(ls_client.iter_tasks(client, ctx.pid), ctx.spec, info, options)
    click.echo(res.message)
    if res.version_dir:
        click.echo(f"version: {res.version_dir}")


@click.command()
@data_dir_option
@click.argument("export_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("predictions", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(["train", "dev", "test"]), default="test", show_default=True, help="Split of the export to score on.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON instead of Markdown.")
def score(data_dir, export_dir, predictions, split, as_json):
    """Score an LLM's answers ({"id", "output"} per line) against an export's gold split (reads no data dir)."""
    import json

    from .score import markdown, score_predictions

    result = score_predictions(export_dir, predictions, split)
    click.echo(json.dumps(result, indent=2, ensure_ascii=False) if as_json else markdown(result))


COMMANDS = (import_, export, score)
