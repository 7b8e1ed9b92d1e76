"""The exact files of a bake, written out by hand: never computed from the payload or the hooks.

A bake holds the PAYLOAD files, the files that each option's chosen value adds (BY_OPTION), and
the answers file the post-generation hook writes. The matrix bakes the default project name, so
paths carry the default package name, `shop_recommender`.

To update after a change to the payload, a module or a hook: edit the lists below (one path per
line, sorted within each `#` group; `paths` refuses an unsorted group). The file-set test of
tests/test_bake.py prints the unexpected and missing files of each configuration in this format.
To list a whole bake: `rm -rf build/shop-recommender && scripts/bake.sh build`, then in
build/shop-recommender `find . -type f -not -path './.git/*' | cut -c3- | LC_ALL=C sort`.
"""

from __future__ import annotations


def paths(block: str) -> frozenset[str]:
    """The paths of a block, one per line; `#` lines start a group, each group sorted."""
    groups: list[list[str]] = [[]]
    for line in (line.strip() for line in block.splitlines()):
        if line.startswith("#"):
            groups.append([])
        elif line:
            groups[-1].append(line)
    for group in groups:
        if group != sorted(set(group)):
            raise ValueError(f"paths not sorted or repeated in the group starting {group[0]!r}")
    return frozenset(path for group in groups for path in group)


# Rendered from the payload ({{cookiecutter.project}}/) into every bake.
PAYLOAD = paths(
    """
    # the project root
    .dockerignore
    .dvc/.gitignore
    .dvc/config
    .dvcignore
    .gitignore
    .python-version
    Makefile
    README.md
    dvc.yaml
    params.tuned.yaml
    params.yaml
    pyproject.toml

    # docker/
    docker/api.Dockerfile
    docker/jobs.Dockerfile

    # benchmarks/
    benchmarks/README.md
    benchmarks/bench_batch.py
    benchmarks/bench_drift.py
    benchmarks/bench_images.py
    benchmarks/bench_serve.py
    benchmarks/bench_serve_ceiling.py
    benchmarks/bench_serve_locustfile.py
    benchmarks/bench_train.py
    benchmarks/conftest.py
    benchmarks/harness.py
    benchmarks/test_bench_batch.py
    benchmarks/test_bench_drift.py
    benchmarks/test_bench_serve.py
    benchmarks/test_bench_train.py
    benchmarks/test_harness.py
    benchmarks/test_help.py

    # docs/ (the site's pages are the repository's Markdown: make docs)
    docs/hooks/reference_pages.py
    docs/hooks/repository_pages.py
    docs/runbooks.md
    mkdocs.yml

    # delivery/
    delivery/README.md
    delivery/delivery.py
    delivery/template_sync.py

    # examples/
    examples/online_retail.params.yaml

    # loadtest/
    loadtest/README.md
    loadtest/locustfile.py
    loadtest/slo.yaml
    loadtest/smoke.py
    loadtest/test_loadtest.py

    # workshop/ (the template's docs/workshop/ labs: make check-lab N=...)
    workshop/check_lab.py
    workshop/test_check_lab.py

    # monitoring/
    monitoring/README.md
    monitoring/grafana/dashboard.json
    monitoring/prometheus/alerts.yml
    monitoring/prometheus/tests/alerts_test.yml
    monitoring/pyproject.toml
    monitoring/src/shop_recommender_monitoring/__init__.py
    monitoring/src/shop_recommender_monitoring/cli.py
    monitoring/src/shop_recommender_monitoring/drift.py
    monitoring/src/shop_recommender_monitoring/report.py

    # packages/api/
    packages/api/pyproject.toml
    packages/api/src/shop_recommender_api/__init__.py
    packages/api/src/shop_recommender_api/access_log.py
    packages/api/src/shop_recommender_api/admin.py
    packages/api/src/shop_recommender_api/app.py
    packages/api/src/shop_recommender_api/cli.py
    packages/api/src/shop_recommender_api/config.py
    packages/api/src/shop_recommender_api/errors.py
    packages/api/src/shop_recommender_api/events_log.py
    packages/api/src/shop_recommender_api/gunicorn_conf.py
    packages/api/src/shop_recommender_api/gunicorn_worker.py
    packages/api/src/shop_recommender_api/json_provider.py
    packages/api/src/shop_recommender_api/metrics.py
    packages/api/src/shop_recommender_api/middleware.py
    packages/api/src/shop_recommender_api/model_store.py
    packages/api/src/shop_recommender_api/openapi.yaml
    packages/api/src/shop_recommender_api/routes/__init__.py
    packages/api/src/shop_recommender_api/routes/events.py
    packages/api/src/shop_recommender_api/routes/health.py
    packages/api/src/shop_recommender_api/routes/items.py
    packages/api/src/shop_recommender_api/routes/metrics.py
    packages/api/src/shop_recommender_api/routes/model.py
    packages/api/src/shop_recommender_api/routes/openapi.py
    packages/api/src/shop_recommender_api/routes/recommendations.py
    packages/api/src/shop_recommender_api/validation.py
    packages/api/src/shop_recommender_api/wsgi.py
    packages/api/tests/conftest.py
    packages/api/tests/test_access_log.py
    packages/api/tests/test_cli.py
    packages/api/tests/test_config.py
    packages/api/tests/test_errors.py
    packages/api/tests/test_events.py
    packages/api/tests/test_gunicorn.py
    packages/api/tests/test_health.py
    packages/api/tests/test_items.py
    packages/api/tests/test_model.py
    packages/api/tests/test_no_monitoring_imports.py
    packages/api/tests/test_openapi.py
    packages/api/tests/test_recommendations.py
    packages/api/tests/test_reference_examples.py
    packages/api/tests/test_registry.py
    packages/api/tests/test_registry_server.py
    packages/api/tests/test_schemathesis.py

    # packages/batch/
    packages/batch/pyproject.toml
    packages/batch/src/shop_recommender_batch/__init__.py
    packages/batch/src/shop_recommender_batch/cli.py
    packages/batch/src/shop_recommender_batch/export.py

    # packages/core/
    packages/core/pyproject.toml
    packages/core/src/shop_recommender_core/__init__.py
    packages/core/src/shop_recommender_core/api_client.py
    packages/core/src/shop_recommender_core/artifact.py
    packages/core/src/shop_recommender_core/cli.py
    packages/core/src/shop_recommender_core/contract.py
    packages/core/src/shop_recommender_core/feedback.py
    packages/core/src/shop_recommender_core/matrix.py
    packages/core/src/shop_recommender_core/metrics.py
    packages/core/src/shop_recommender_core/model_source.py
    packages/core/src/shop_recommender_core/models.py
    packages/core/src/shop_recommender_core/ranking.py
    packages/core/src/shop_recommender_core/raw_tables.py
    packages/core/src/shop_recommender_core/registry.py
    packages/core/src/shop_recommender_core/shared.py
    packages/core/src/shop_recommender_core/template.json
    packages/core/src/shop_recommender_core/template.py
    packages/core/src/shop_recommender_core/weighting.py
    packages/core/tests/conftest.py
    packages/core/tests/test_artifact.py
    packages/core/tests/test_artifact_modes.py
    packages/core/tests/test_contract.py
    packages/core/tests/test_feedback.py
    packages/core/tests/test_matrix.py
    packages/core/tests/test_metrics.py
    packages/core/tests/test_model_source.py
    packages/core/tests/test_models.py
    packages/core/tests/test_ranking.py
    packages/core/tests/test_raw_tables.py
    packages/core/tests/test_weighting.py

    # packages/registry/
    packages/registry/pyproject.toml
    packages/registry/src/shop_recommender_registry/__init__.py
    packages/registry/src/shop_recommender_registry/actions.py
    packages/registry/src/shop_recommender_registry/audit.py
    packages/registry/src/shop_recommender_registry/audit_text.py
    packages/registry/src/shop_recommender_registry/backup.py
    packages/registry/src/shop_recommender_registry/canary.py
    packages/registry/src/shop_recommender_registry/cli.py
    packages/registry/src/shop_recommender_registry/model_card.py

    # packages/training/
    packages/training/pyproject.toml
    packages/training/src/shop_recommender_training/__init__.py
    packages/training/src/shop_recommender_training/cli.py
    packages/training/src/shop_recommender_training/config.py
    packages/training/src/shop_recommender_training/data_stages.py
    packages/training/src/shop_recommender_training/evaluation.py
    packages/training/src/shop_recommender_training/evaluation_report.py
    packages/training/src/shop_recommender_training/gate.py
    packages/training/src/shop_recommender_training/gate_report.py
    packages/training/src/shop_recommender_training/lineage.py
    packages/training/src/shop_recommender_training/model_code.py
    packages/training/src/shop_recommender_training/model_stages.py
    packages/training/src/shop_recommender_training/pipeline.py
    packages/training/src/shop_recommender_training/pyfunc.py
    packages/training/src/shop_recommender_training/register.py
    packages/training/src/shop_recommender_training/retrain.py
    packages/training/src/shop_recommender_training/synthetic.py
    packages/training/src/shop_recommender_training/tune.py
    packages/training/tests/test_apply_params.py
    packages/training/tests/test_evaluation_report.py
    packages/training/tests/test_gate_report.py
    packages/training/tests/test_lineage.py
    packages/training/tests/test_online_retail.py
    packages/training/tests/test_synthetic.py
    packages/training/tests/test_tune.py

    # tests/
    tests/conftest.py
    tests/test_accuracy.py
    tests/test_alert_rules.py
    tests/test_architecture.py
    tests/test_batch.py
    tests/test_batch_recommend.py
    tests/test_canary.py
    tests/test_cli.py
    tests/test_delivery.py
    tests/test_drift.py
    tests/test_dvc_pipeline.py
    tests/test_makefile.py
    tests/test_model_card.py
    tests/test_monitoring_contract.py
    tests/test_promotion_race.py
    tests/test_registry.py
    tests/test_registry_actions.py
    tests/test_registry_backup.py
    tests/test_retrain.py
    tests/test_template_sync.py
    """
)

# Written by the post-generation hook into every bake: the answers, for `cruft update`.
ANSWERS = paths(".cookiecutter.json")

NO_FILES = paths("")
GITHUB = paths(
    """
    .github/actions/credentials/action.yml
    .github/workflows/code-ci.yml
    .github/workflows/deploy.yml
    .github/workflows/model-ci.yml
    .github/workflows/rollback.yml
    .github/workflows/schedules.yml
    .github/workflows/template-update.yml
    delivery/CI.md
    """
)
GITLAB = paths(
    """
    .gitlab-ci.yml
    delivery/CI.md
    """
)
# The Kubernetes and Ansible modules (vendored from k8s/ and ansible/, plus whatever the payload
# renders into the project's k8s/ and ansible/ folders).
KUBERNETES = paths(
    """
    k8s/README.md
    k8s/base/api-canary-deployment.yaml
    k8s/base/api-deployment.yaml
    k8s/base/api-hpa.yaml
    k8s/base/api-pdb.yaml
    k8s/base/api-service.yaml
    k8s/base/batch-export-cronjob.yaml
    k8s/base/drift-cronjob.yaml
    k8s/base/httproute.yaml
    k8s/base/kustomization.yaml
    k8s/base/namespace.yaml
    k8s/base/networkpolicies.yaml
    k8s/base/rbac.yaml
    k8s/base/retrain-cronjob.yaml
    k8s/base/serviceaccounts.yaml
    k8s/base/volumes.yaml
    k8s/components/canary/kustomization.yaml
    k8s/components/canary/service.yaml
    k8s/components/external-mlflow/kustomization.yaml
    k8s/components/external-mlflow/networkpolicy.yaml
    k8s/components/flagger/canary.yaml
    k8s/components/flagger/kustomization.yaml
    k8s/components/flagger/metrictemplates.yaml
    k8s/components/ingress/ingress.yaml
    k8s/components/ingress/kustomization.yaml
    k8s/components/loadtest/job.yaml
    k8s/components/loadtest/kustomization.yaml
    k8s/components/mlflow-server/kustomization.yaml
    k8s/components/mlflow-server/mlflow.yaml
    k8s/components/mlflow-server/networkpolicies.yaml
    k8s/components/monitoring/kustomization.yaml
    k8s/components/monitoring/prometheusrule.yaml
    k8s/components/monitoring/servicemonitor.yaml
    k8s/components/postgres/create-auth-database.sql
    k8s/components/postgres/kustomization.yaml
    k8s/components/postgres/postgres.yaml
    k8s/manifests.py
    k8s/overlays/dev/kustomization.yaml
    k8s/overlays/prod/kustomization.yaml
    k8s/overlays/staging/kustomization.yaml
    """
)
ANSIBLE = paths(
    """
    ansible/README.md
    ansible/ansible.cfg
    ansible/group_vars/all/project.yml
    ansible/inventories/dev/group_vars/all/main.yml
    ansible/inventories/dev/group_vars/all/secrets.yml
    ansible/inventories/dev/hosts.yml
    ansible/inventories/prod/group_vars/all/main.yml
    ansible/inventories/prod/group_vars/all/secrets.yml
    ansible/inventories/prod/hosts.yml
    ansible/inventories/staging/group_vars/all/main.yml
    ansible/inventories/staging/group_vars/all/secrets.yml
    ansible/inventories/staging/hosts.yml
    ansible/preflight.yml
    ansible/roles/common/README.md
    ansible/roles/common/defaults/main.yml
    ansible/roles/common/handlers/main.yml
    ansible/roles/common/meta/main.yml
    ansible/roles/common/tasks/main.yml
    ansible/roles/common/tasks/packages.yml
    ansible/roles/common/tasks/unattended_upgrades.yml
    ansible/roles/common/tasks/user.yml
    ansible/roles/common/templates/20auto-upgrades.j2
    ansible/roles/common/templates/52unattended-upgrades-local.j2
    ansible/roles/mlflow_server/README.md
    ansible/roles/mlflow_server/defaults/main.yml
    ansible/roles/mlflow_server/handlers/main.yml
    ansible/roles/mlflow_server/meta/main.yml
    ansible/roles/mlflow_server/tasks/assert.yml
    ansible/roles/mlflow_server/tasks/auth.yml
    ansible/roles/mlflow_server/tasks/configure.yml
    ansible/roles/mlflow_server/tasks/install.yml
    ansible/roles/mlflow_server/tasks/main.yml
    ansible/roles/mlflow_server/tasks/service.yml
    ansible/roles/mlflow_server/tasks/verify_admin.yml
    ansible/roles/mlflow_server/templates/basic_auth.ini.j2
    ansible/roles/mlflow_server/templates/mlflow-auth-sync.j2
    ansible/roles/mlflow_server/templates/mlflow-server.env.j2
    ansible/roles/mlflow_server/templates/mlflow-server.service.j2
    ansible/roles/monitoring/README.md
    ansible/roles/monitoring/defaults/main.yml
    ansible/roles/monitoring/handlers/main.yml
    ansible/roles/monitoring/meta/main.yml
    ansible/roles/monitoring/tasks/main.yml
    ansible/roles/monitoring/templates/prometheus.default.j2
    ansible/roles/monitoring/templates/prometheus.yml.j2
    ansible/roles/postgresql/README.md
    ansible/roles/postgresql/defaults/main.yml
    ansible/roles/postgresql/handlers/main.yml
    ansible/roles/postgresql/meta/main.yml
    ansible/roles/postgresql/tasks/configure.yml
    ansible/roles/postgresql/tasks/databases.yml
    ansible/roles/postgresql/tasks/install.yml
    ansible/roles/postgresql/tasks/main.yml
    ansible/roles/postgresql/templates/50-ansible.conf.j2
    ansible/roles/postgresql/templates/pg_hba.conf.j2
    ansible/roles/postgresql/templates/pg_ident.conf.j2
    ansible/roles/recsys_api/README.md
    ansible/roles/recsys_api/defaults/main.yml
    ansible/roles/recsys_api/handlers/main.yml
    ansible/roles/recsys_api/meta/main.yml
    ansible/roles/recsys_api/tasks/main.yml
    ansible/roles/recsys_api/tasks/reload.yml
    ansible/roles/recsys_api/templates/api.env.j2
    ansible/roles/recsys_api/templates/api.service.j2
    ansible/roles/recsys_api/templates/nginx-site.conf.j2
    ansible/roles/retrain_timer/README.md
    ansible/roles/retrain_timer/defaults/main.yml
    ansible/roles/retrain_timer/handlers/main.yml
    ansible/roles/retrain_timer/meta/main.yml
    ansible/roles/retrain_timer/tasks/main.yml
    ansible/roles/retrain_timer/tasks/rollback.yml
    ansible/roles/retrain_timer/templates/job.service.j2
    ansible/roles/retrain_timer/templates/job.timer.j2
    ansible/roles/retrain_timer/templates/jobs.env.j2
    ansible/roles/retrain_timer/templates/notify.env.j2
    ansible/roles/retrain_timer/templates/notify.sh.j2
    ansible/roles/retrain_timer/templates/notify@.service.j2
    ansible/rollback.yml
    ansible/serving.yml
    ansible/site.yml
    ansible/tracking.yml
    """
)
LICENSE = paths("LICENSE")

# Per option, per value: the files that value adds to PAYLOAD. Every choice of cookiecutter.json
# has an entry (tests/test_bake.py checks), so a new choice needs its files written here.
BY_OPTION: dict[str, dict[str, frozenset[str]]] = {
    "python_version": {"3.11": NO_FILES, "3.12": NO_FILES, "3.13": NO_FILES},
    "ci_provider": {"github": GITHUB, "gitlab": GITLAB, "none": NO_FILES},
    "deploy_target": {
        "kubernetes+ansible": KUBERNETES | ANSIBLE,
        "kubernetes": KUBERNETES,
        "ansible": ANSIBLE,
        "none": NO_FILES,
    },
    "default_model": {
        "rp3beta": NO_FILES,
        "ease": NO_FILES,
        "als": NO_FILES,
        "itemknn": NO_FILES,
        "popularity": NO_FILES,
    },
    "license": {"MIT": LICENSE, "Apache-2.0": LICENSE, "Proprietary": NO_FILES},
}


def expected_files(config: dict[str, str]) -> set[str]:
    """The files a bake with these choices must hold, `.git/` aside."""
    files = set(PAYLOAD | ANSWERS)
    for option, by_value in BY_OPTION.items():
        files |= by_value[config[option]]
    return files
