"""plugins/emotionops_links.py: the extra links are registered for the DAGs' tasks and build
their URLs from the task's JSON outcome line and the configured UI base (no network).
The end-to-end test (test_dag_run.py) resolves them on real runs."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.dags

RESULT = {"run_id": "abc123", "model_name": "emotion classifier", "version": 3}


@pytest.fixture()
def links():
    from airflow import plugins_manager

    plugins_manager.ensure_plugins_loaded()
    import emotionops_links  # the plugins folder is importable once plugins are loaded

    return emotionops_links


def test_links_are_registered_for_bash_tasks(links) -> None:
    from airflow import plugins_manager
    from airflow.providers.standard.operators.bash import BashOperator

    names = {type(link).__name__: link for link in plugins_manager.get_operator_extra_links()}
    assert {"MlflowRunLink", "RegisteredVersionLink", "DataDocsLink"} <= set(names)
    for link in names.values():
        assert BashOperator in link.operators


def test_urls_come_from_the_ui_base_and_the_task_result(links, monkeypatch) -> None:
    monkeypatch.delenv("EMOTIONOPS_MLFLOW_UI_URL", raising=False)
    monkeypatch.setenv("EMOTIONOPS_MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert links.run_url(RESULT) == "http://mlflow:5000/#/runs/abc123"
    monkeypatch.setenv("EMOTIONOPS_MLFLOW_UI_URL", "https://mlflow.example.org/ui/")
    assert links.run_url(RESULT) == "https://mlflow.example.org/ui/#/runs/abc123"
    assert (
        links.version_url(RESULT)
        == "https://mlflow.example.org/ui/#/models/emotion%20classifier/versions/3"
    )
    assert links.run_url({}) == "" and links.version_url({"run_id": "x"}) == ""
    monkeypatch.delenv("EMOTIONOPS_MLFLOW_UI_URL")
    monkeypatch.setenv("EMOTIONOPS_MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    assert links.run_url(RESULT) == ""  # no UI to link to


def test_data_docs_pages_as_files_or_under_a_served_site(links, monkeypatch) -> None:
    page = "/p/data/gx/uncommitted/data_docs/local_site/validations/urls/run 1.html"
    result = {"data_docs": "/p/data/gx/uncommitted/data_docs/local_site/index.html",
              "pages": [page], "success": False}  # fmt: skip
    monkeypatch.delenv("EMOTIONOPS_DATA_DOCS_URL", raising=False)
    assert links.data_docs_url(result) == "file://" + page.replace(" ", "%20")
    monkeypatch.setenv("EMOTIONOPS_DATA_DOCS_URL", "https://docs.example.org/gx/")
    assert (
        links.data_docs_url(result) == "https://docs.example.org/gx/validations/urls/run%201.html"
    )
    assert links.data_docs_url({}) == ""


def test_a_task_result_line_is_parsed_and_anything_else_is_ignored(links, monkeypatch) -> None:
    monkeypatch.setattr(links, "_xcom_value", lambda key: json.dumps(RESULT))
    assert links.task_result(None) == RESULT
    for other in (None, "manifest: /x/urls.csv", "{not json", "[1, 2]"):
        monkeypatch.setattr(links, "_xcom_value", lambda key, v=other: v)
        assert links.task_result(None) == {}


def test_a_link_only_answers_for_its_tasks(links, monkeypatch) -> None:
    from airflow.providers.standard.operators.bash import BashOperator

    monkeypatch.setenv("EMOTIONOPS_MLFLOW_UI_URL", "http://m")
    monkeypatch.setattr(links, "_xcom_value", lambda key: json.dumps(RESULT))
    train = BashOperator(task_id="train", bash_command="true")
    other = BashOperator(task_id="download", bash_command="true")
    assert links.MlflowRunLink().get_link(train, ti_key=None) == "http://m/#/runs/abc123"
    assert links.MlflowRunLink().get_link(other, ti_key=None) == ""
    assert links.DataDocsLink().get_link(train, ti_key=None) == ""


def test_the_mlflow_connection_macro(links, monkeypatch) -> None:
    conn = {"conn_type": "http", "host": "mlflow.internal", "port": 5000}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    assert links.tracking_uri("mlflow_default") == "http://mlflow.internal:5000"
    conn = {"conn_type": "https", "host": "mlflow.example.org", "schema": "tracking"}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    assert links.tracking_uri("mlflow_default") == "https://mlflow.example.org/tracking"
