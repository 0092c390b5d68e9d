"""The A/B settings from the Helm values, and the nginx.conf rendered from them (checked by
``nginx -t``, no server started)."""

from pathlib import Path

import pytest

from serving.router.ab_config import DEFAULT_VALUES_PATH, AbTestConfig, load_ab_config
from serving.router.nginx import RouterConfig, check_nginx_conf, render_nginx_conf, write_nginx_conf


def _values(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(text)
    return path


def _router(ab: AbTestConfig, challenger: str | None = "catboost_anomaly") -> RouterConfig:
    return RouterConfig(
        ab=ab,
        champion_model="xgboost_anomaly",
        challenger_model=challenger,
        http_upstreams=["127.0.0.1:8000", "127.0.0.1:9000"],
        grpc_upstreams=["127.0.0.1:8001"],
        metrics_upstreams=["127.0.0.1:8002"],
        http_port=8080,
        grpc_port=8081,
    )


def test_the_chart_values_give_the_default_split() -> None:
    config = load_ab_config(DEFAULT_VALUES_PATH)
    assert (config.champion_weight, config.challenger_weight) == (70, 30)
    assert config.cookie.name == "ab_variant"


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ("abTest: {championWeight: 70, challengerWeight: 20}", "must be 100"),
        ("abTest: {championWeight: 120, challengerWeight: -20}", "abTest.championWeight"),
        ("abTest: {championWeight: 70, challengerWeight: 30, typo: 1}", "abTest.typo"),
        ("other: {}", "no 'abTest' mapping"),
        ("abTest: [", "not valid YAML"),
    ],
)
def test_bad_values_name_the_file_and_the_key(tmp_path: Path, section: str, named: str) -> None:
    path = _values(tmp_path, section)
    with pytest.raises(ValueError, match=named) as error:
        load_ab_config(path)
    assert str(path) in str(error.value)


def test_other_chart_sections_are_left_to_the_chart(tmp_path: Path) -> None:
    path = _values(tmp_path, "image: {tag: x}\nabTest: {championWeight: 50, challengerWeight: 50}")
    assert load_ab_config(path).champion_weight == 50


def test_rendered_config_is_accepted_by_nginx(tmp_path: Path) -> None:
    conf_path = write_nginx_conf(_router(load_ab_config()), tmp_path)
    check_nginx_conf(conf_path, tmp_path)
    text = conf_path.read_text()
    assert "70% champion;" in text
    assert "* challenger;" in text


def test_a_zero_weight_arm_gets_no_new_clients_and_loses_its_cookie() -> None:
    text = render_nginx_conf(_router(AbTestConfig(champion_weight=100, challenger_weight=0)))
    split = text.split("split_clients", 1)[1].split("}", 1)[0]
    assert split.split("{", 1)[1].split() == ["*", "champion;"]
    cookie_map = text.split("$ab_cookie_arm {", 1)[1].split("}", 1)[0]
    assert "challenger challenger;" not in cookie_map


def test_a_challenger_weight_without_a_challenger_is_refused() -> None:
    with pytest.raises(ValueError, match="challengerWeight is 30"):
        _router(AbTestConfig(), challenger=None)
    config = _router(AbTestConfig(champion_weight=100, challenger_weight=0), challenger=None)
    assert "catboost_anomaly" not in render_nginx_conf(config)


def test_upstreams_must_be_host_and_port() -> None:
    with pytest.raises(ValueError, match="not host:port"):
        RouterConfig(ab=AbTestConfig(), champion_model="m", http_upstreams=["127.0.0.1"])
