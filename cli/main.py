"""The ``zoo`` command: assembles the command groups and maps errors to exit codes.

Each command lives in a module of this package and is imported only when it is invoked (or when
``--help`` lists it, which imports the module but not torch: command modules import heavy libraries
inside their functions). Exit codes: 0 success, 1 a ``ZooError`` or any operating-system, encoding or
recursion error that escapes a command (one line on stderr naming the path and what to do), 2 a usage
error, 130 interrupted. ``ZOO_DEBUG=1`` shows the full traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from zoo.registry import env
from zoo.registry.errors import ZooError

__all__ = ["main", "cli"]

# command name -> "module:attribute"; the modules are imported on demand
COMMANDS = {
    "list": "zoo.cli.catalog:list_cmd",
    "info": "zoo.cli.catalog:info_cmd",
    "card": "zoo.cli.catalog:card_cmd",
    "download": "zoo.cli.fetch:download_cmd",
    "cache": "zoo.cli.fetch:cache_group",
    "mirror": "zoo.cli.fetch:mirror_cmd",
    "extract": "zoo.cli.extract:extract_cmd",
    "similar": "zoo.cli.extract:similar_cmd",
    "finetune": "zoo.cli.finetune:finetune_cmd",
    "evaluate": "zoo.cli.finetune:evaluate_cmd",
    "predict": "zoo.cli.predict:predict_cmd",
    "validate": "zoo.cli.predict:validate_cmd",
    "lr-find": "zoo.cli.finetune:lr_find_cmd",
    "register": "zoo.cli.finetune:register_cmd",
    "runs": "zoo.cli.finetune:runs_cmd",
    "train": "zoo.cli.train:train_cmd",
    "import-caffe": "zoo.cli.caffe:import_caffe_cmd",
    "export": "zoo.cli.export:export_cmd",
    "demo": "zoo.cli.demo:demo_cmd",
}


class LazyGroup(click.Group):
    """A group whose commands are imported when used, so ``zoo list`` never pays for ``zoo train``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._available(name)]

    @staticmethod
    def _available(name: str) -> bool:
        module = COMMANDS[name].partition(":")[0]
        return importlib.util.find_spec(module) is not None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None or not self._available(name):
            return None
        module_name, _, attr = target.partition(":")
        return getattr(importlib.import_module(module_name), attr)

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as err:
            from zoo.registry.errors import close_matches

            near = close_matches(args[0], self.list_commands(ctx)) if args else []
            if near:
                raise click.UsageError(f"{err.message} Did you mean: {', '.join(near)}?", ctx) from None
            raise


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="zoo", prog_name="zoo")
def cli() -> None:
    """A pretrained model zoo: browse and fetch models, fine-tune them on your images, extract features.

    \b
    Examples:
      zoo list resnet*                 models whose name matches
      zoo info bvlc_googlenet          sources, checksums, licence, preprocessing
      zoo download resnet50            fetch, verify and cache the weights
      zoo finetune zoo_lenet photos/   fine-tune on a folder of class folders
      zoo extract resnet50 photos/ --out feats.npz

    Environment: ZOO_HOME (cache), ZOO_OFFLINE=1, ZOO_MIRROR (folder or URL),
    ZOO_REGISTRY (extra entry files), ZOO_DEBUG=1 (full tracebacks).
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``zoo`` console script."""
    from zoo.hub import sync_offline

    sync_offline()  # ZOO_OFFLINE reaches huggingface_hub before anything imports it
    try:
        # Without standalone mode click returns ctx.exit(n)'s code instead of exiting: pass it on.
        code = cli.main(args=argv, prog_name="zoo", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except ZooError as err:
        _fail(err, str(err), getattr(err, "exit_code", 1))
    except BrokenPipeError:
        sys.exit(0)
    except (OSError, UnicodeError, RecursionError) as err:
        _fail(err, _one_line(err), 1)


def _one_line(err: BaseException) -> str:
    """The message for an error that is not the zoo's own: what, where, and what to do."""
    from zoo.errors import describe_os_error

    if isinstance(err, OSError):
        return describe_os_error(err, doing="running the command",
                                 remedy="choose a writable folder with free space (ZOO_HOME for the cache, "
                                        "--out for outputs)")
    if isinstance(err, UnicodeError):
        return (f"Text that must be UTF-8 is not ({type(err).__name__}: {err}). Check the file or name you "
                f"passed (re-save it as UTF-8); set ZOO_DEBUG=1 to see where it was read.")
    return ("Input nested too deeply to process (RecursionError); a file you passed or a registry file is "
            "malformed. Set ZOO_DEBUG=1 to see which.")


def _fail(err: BaseException, message: str, code: int) -> None:
    if env.debug():
        raise err
    click.echo(f"Error: {' '.join(message.splitlines())}", err=True)  # one line, whatever the message held
    sys.exit(code)


if __name__ == "__main__":  # python -m zoo.cli.main (and torchrun -m zoo.cli.main train ...)
    main()
