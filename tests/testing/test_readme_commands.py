"""The README test's command collector: blocks, continuations, comments and inline commands."""

from medcyclegan.testing.readme import readme_commands, strip_comment

TEXT = """Install (`sudo apt-get install
python3-venv`), then see `data.ct_dir` and `-R <rule>`:

```bash
snakemake -j8 results/a.png   # the main command
snakemake results/a.png --profile p \\
    --set-resources train:gpu=1
echo "a # not a comment"  # but this is
```

```yaml
data:
  ct_dir: snakemake -n   # yaml, not a command
```

Or inline: `snakemake --unlock`, and again `snakemake -j8 results/a.png`.
"""


def test_commands_in_order_once_with_continuations_joined():
    assert readme_commands(TEXT) == [
        "sudo apt-get install python3-venv",
        "snakemake -j8 results/a.png",
        "snakemake results/a.png --profile p --set-resources train:gpu=1",
        'echo "a # not a comment"',
        "snakemake --unlock",
    ]


def test_comment_stripping_respects_quotes_and_words():
    assert strip_comment("snakemake -n  # why") == "snakemake -n"
    assert strip_comment("echo 'x # y'") == "echo 'x # y'"
    assert strip_comment("curl http://h/#anchor") == "curl http://h/#anchor"
    assert strip_comment("# only a comment") == ""
