"""params.yaml and settings: defaults, validation with the offending key named."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from emotionops.params import DEFAULT_LABELS, Params, ParamsError, load_params
from emotionops.settings import Settings, SettingsError, get_settings

REPO = Path(__file__).resolve().parents[2]


def test_repository_params_load_with_default_labels() -> None:
    params = load_params(REPO / "params.yaml")
    assert tuple(params.labels) == DEFAULT_LABELS
    assert params.train.batch_size % 2 == 0
    assert all(params.queries_for(label) for label in params.labels)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("train: {batch_size: 33}", "train.batch_size"),
        ("train: {epochs: 0}", "train.epochs"),
        ("split: {test_fraction: 0.5, val_fraction: 0.45}", "split"),
        ("labels: [happy]", "labels"),
        ("scrape: {queries: {bored: [x]}}", "bored"),
        ("trian: {epochs: 3}", "trian"),
        ("labels: [happy, sad", "not valid YAML"),
    ],
)
def test_bad_params_name_the_key(tmp_path, text, needle) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError, match=needle) as info:
        load_params(path)
    assert str(path) in str(info.value)


def test_code_defaults_are_the_repository_recipe() -> None:
    """params.yaml is the recipe, and every section of it is written there."""
    assert Params() == load_params(REPO / "params.yaml")
    text = "\n" + (REPO / "params.yaml").read_text()
    assert [s for s in Params.model_fields if f"\n{s}:" not in text] == []


def test_removing_a_section_from_params_yaml_keeps_its_values(tmp_path) -> None:
    full = load_params(REPO / "params.yaml")
    path = tmp_path / "params.yaml"
    path.write_text("labels: [happy, sad, surprise, neutral]\n")
    assert load_params(path) == full


def test_default_queries_follow_the_label_set_and_typos_in_given_ones_fail(tmp_path) -> None:
    two = Params(labels=["happy", "sad"])
    assert sorted(two.scrape.queries) == ["happy", "sad"]
    with pytest.raises(ValidationError, match="happpy"):
        Params(labels=["happy", "sad"], scrape={"queries": {"happpy": ["x"]}})


def test_the_demo_recipe_overrides_train_for_the_demo_only(tmp_path) -> None:
    params = load_params(REPO / "params.yaml")
    demo = params.demo_params()
    assert demo.train.model == params.demo.train["model"] != params.train.model
    assert demo.train.partners == [] and demo.train.seed == params.train.seed
    assert demo.labels == params.labels and params.train.model == "vgg"  # train untouched
    path = tmp_path / "params.yaml"
    path.write_text("demo: {train: {batch_size: 15}}\n")
    assert demo.registry.floor_macro_f1 == 0 < params.registry.floor_macro_f1
    assert demo.registry.min_improvement == params.registry.min_improvement
    with pytest.raises(ParamsError, match=r"demo: batch_size: .*even"):
        load_params(path)


def test_missing_params_file(tmp_path) -> None:
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_production_refuses_embedded_defaults(monkeypatch) -> None:
    monkeypatch.setenv("EMOTIONOPS_ENVIRONMENT", "production")
    get_settings.cache_clear()
    with pytest.raises(SettingsError, match="EMOTIONOPS_WAREHOUSE_URL"):
        get_settings()
    get_settings.cache_clear()


def test_password_is_injected_not_stored_in_url(monkeypatch) -> None:
    monkeypatch.setenv("EMOTIONOPS_WAREHOUSE_URL", "postgresql+psycopg://app@db:5432/wh")
    monkeypatch.setenv("EMOTIONOPS_WAREHOUSE_PASSWORD", "s3cret")
    settings = Settings(_env_file=None)
    assert settings.resolved_warehouse_url() == "postgresql+psycopg://app:s3cret@db:5432/wh"
    assert "s3cret" not in repr(settings)
