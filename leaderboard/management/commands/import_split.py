"""`python manage.py import_split --benchmark SLUG --name NAME PATH`: host a split."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from evaluator.config import ConfigError, load_config
from leaderboard.models import Benchmark, Split
from leaderboard.services import ServiceError, benchmark_create, split_import


class Command(BaseCommand):
    help = (
        "Import a split package (folder or .tar with gt/) into a benchmark, creating the "
        "benchmark if needed. The ground truth goes to private storage and the public "
        "inputs package to the default storage."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="split folder or .tar, with its gt/ folder")
        parser.add_argument("--benchmark", required=True, help="benchmark slug, e.g. reflade")
        parser.add_argument("--name", required=True, help="split name within the benchmark, e.g. val or test")
        parser.add_argument(
            "--visibility", choices=[choice for choice, _ in Split.VISIBILITY_CHOICES], default="public",
            help="public: per-sample results may be shown; hidden: only aggregates (default public)",
        )
        parser.add_argument(
            "--config", default=None,
            help="benchmark config name or .json path, for a new benchmark (default reflade-v1)",
        )
        parser.add_argument("--title", default=None, help="display name of a new benchmark (default: the slug)")
        parser.add_argument("--description", default="", help="description of a new benchmark")

    def handle(self, *args, **options):
        slug = options["benchmark"]
        try:
            benchmark = self.get_or_create_benchmark(slug, options)
            split = split_import(
                benchmark=benchmark, name=options["name"], path=options["path"], visibility=options["visibility"]
            )
        except (ServiceError, ConfigError) as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"imported {split}: {split.sample_count} samples, {split.visibility}, "
            f"ground truth version {split.ground_truth_version[:12]}"
        )

    def get_or_create_benchmark(self, slug: str, options: dict) -> Benchmark:
        benchmark = Benchmark.objects.filter(slug=slug).first()
        if benchmark is None:
            benchmark = benchmark_create(
                slug=slug,
                name=options["title"] or slug,
                description=options["description"],
                config=options["config"] or "reflade-v1",
            )
            self.stdout.write(f"created benchmark {slug} with config {benchmark.config_name} {benchmark.config_version}")
            return benchmark
        if options["config"] is not None and load_config(options["config"]).hash != benchmark.config_hash:
            raise CommandError(
                f"benchmark {slug} is scored with config {benchmark.config_name} {benchmark.config_version} "
                f"(hash {benchmark.config_hash[:12]}), which differs from --config {options['config']}; "
                "leave out --config or create a new benchmark"
            )
        return benchmark
