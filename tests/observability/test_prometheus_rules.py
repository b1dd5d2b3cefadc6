"""The Prometheus config and alert rules load, and the alerts' unit tests pass (promtool)."""

from __future__ import annotations

from observability.prom import PROM_DIR, promtool


def test_config_and_rules_check_clean() -> None:
    res = promtool("check", "config", str(PROM_DIR / "prometheus.yml"))
    assert res.returncode == 0, res.stdout + res.stderr
    res = promtool("check", "rules", str(PROM_DIR / "alerts.yml"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 7 rules found" in res.stdout


def test_alert_unit_tests_pass() -> None:
    res = promtool("test", "rules", "alerts_test.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_every_alert_has_a_unit_test() -> None:
    alerts = {
        line.split(":", 1)[1].strip()
        for line in (PROM_DIR / "alerts.yml").read_text().splitlines()
        if line.strip().startswith("- alert:")
    }
    tested = (PROM_DIR / "alerts_test.yml").read_text()
    assert alerts and all(f"alertname: {a}" in tested for a in alerts), alerts
