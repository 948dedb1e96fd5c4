"""One results folder, several stores: a real `mlflow server` on 127.0.0.1 and SQLite stores. Every cell reaches
every store it is sent to once, under a parent run that exists in that store (the journal records deliveries
per store)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from core_support import MlflowServer, harness_env, load_json, mlflow_cell_runs, run_harness

from harness.tracking import layout

ENV = harness_env(HARNESS_DISABLE_PLUGIN_AUTOLOAD="1", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
BASE = ("-p", "fixture_plugin")


def write_suite(tmp_path: Path, name: str) -> None:
    (tmp_path / f"{name}.toml").write_text(
        f'name = "{name}"\ndescription = "stores"\nseeds = [0, 1, 2]\nmetrics = ["score"]\n'
        'algorithms = ["noop", "random"]\nenvironments = ["constant"]\n'
    )


def deliveries(tracking_uri: str, suite: str) -> Counter:
    """How many cell runs each record id has in the store, and check each sits under a parent that exists."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = mlflow_cell_runs(tracking_uri, suite)
    for run in runs:
        parent = client.get_run(run.data.tags[layout.MLFLOW_PARENT])
        assert parent.data.tags[layout.KIND] == layout.KIND_SUITE_RUN
        assert parent.info.status in ("FINISHED", "FAILED"), "the parent is closed"
    return Counter(run.data.tags[layout.RECORD_ID] for run in runs)


def test_a_run_against_a_new_store_delivers_every_cell_there(tmp_path: Path, server: MlflowServer) -> None:
    write_suite(tmp_path, "stores-new")
    store_a = f"sqlite:///{tmp_path / 'a.db'}"
    first = run_harness(*BASE, "run", "stores-new.toml", "--tracking-uri", store_a, "--json", cwd=tmp_path, env=ENV)
    assert first.returncode == 0, first.stderr
    records = {cell["key"] for cell in load_json(first)["cells"]}
    assert len(records) == 6

    second = run_harness(*BASE, "run", "stores-new.toml", "--tracking-uri", server.uri, "--json", cwd=tmp_path,
                         env=ENV)  # fmt: skip
    assert second.returncode == 0, second.stderr
    summary = load_json(second)
    assert summary["already_finished"] == 6 and summary["tracking_error"] is None
    assert "delivered 6 result(s) from the journal" in second.stderr
    in_b = deliveries(server.uri, "stores-new")
    assert len(in_b) == 6 and set(in_b.values()) == {1}
    assert all(run.data.tags[layout.MLFLOW_PARENT] == summary["parent_run_id"]
               for run in mlflow_cell_runs(server.uri, "stores-new"))  # fmt: skip
    in_a = deliveries(store_a, "stores-new")
    assert in_a == in_b, "the same records in both stores, once each"

    for uri in (server.uri, store_a):
        synced = run_harness(*BASE, "sync", "--tracking-uri", uri, "--json", cwd=tmp_path, env=ENV)
        assert synced.returncode == 0 and load_json(synced) == [], synced.stdout
    again = run_harness(*BASE, "run", "stores-new.toml", "--tracking-uri", store_a, "--json", cwd=tmp_path, env=ENV)
    assert load_json(again)["parent_run_id"] == load_json(first)["parent_run_id"]
    assert deliveries(store_a, "stores-new") == in_a


def test_sync_delivers_each_cell_once_per_store_under_a_parent_of_that_store(
    tmp_path: Path, server: MlflowServer
) -> None:
    write_suite(tmp_path, "stores-sync")
    store_a = f"sqlite:///{tmp_path / 'a.db'}"
    store_c = f"sqlite:///{tmp_path / 'c.db'}"
    first = run_harness(*BASE, "run", "stores-sync.toml", "--tracking-uri", store_a, "--json", cwd=tmp_path, env=ENV)
    assert first.returncode == 0, first.stderr

    for uri in (server.uri, store_c):
        synced = run_harness(*BASE, "sync", "--tracking-uri", uri, "--json", cwd=tmp_path, env=ENV)
        assert synced.returncode == 0, synced.stderr
        (report,) = load_json(synced)
        assert report["delivered"] == 6 and report["error"] is None
        counts = deliveries(uri, "stores-sync")
        assert len(counts) == 6 and set(counts.values()) == {1}
        from mlflow.tracking import MlflowClient

        assert MlflowClient(uri).get_run(report["parent_run_id"]).info.status == "FINISHED"
    # Every store already has everything: a sync to any of them delivers nothing and changes nothing.
    for uri in (server.uri, store_c, store_a):
        synced = run_harness(*BASE, "sync", "--tracking-uri", uri, "--json", cwd=tmp_path, env=ENV)
        assert load_json(synced) == []
        assert set(deliveries(uri, "stores-sync").values()) == {1}


def parents(tracking_uri: str, suite: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(suite)
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.`{layout.KIND}` = 'suite-run'")


def test_a_moved_results_folder_is_the_same_store_no_second_parent_and_no_duplicates(tmp_path: Path) -> None:
    """The embedded store moves with its folder (`mv results elsewhere`): run and sync there find the parent they
    made before, by the id the store holds, and deliver nothing twice (issue 23, case 5)."""
    write_suite(tmp_path, "stores-moved")
    first = run_harness(*BASE, "--results-dir", "before", "run", "stores-moved.toml", "--json", cwd=tmp_path, env=ENV)
    assert first.returncode == 0, first.stderr
    parent = load_json(first)["parent_run_id"]
    (tmp_path / "before").rename(tmp_path / "after")
    moved = f"sqlite:///{tmp_path / 'after' / 'mlflow.db'}"

    # The journal names the store by its old path: sync finds it in the moved folder, and it is the same store.
    synced = run_harness(*BASE, "--results-dir", "after", "sync", "--json", cwd=tmp_path, env=ENV)
    assert synced.returncode == 0, synced.stderr
    assert all(report["delivered"] == 0 for report in load_json(synced)), synced.stdout
    assert not (tmp_path / "before").exists(), "no new store where the folder used to be"
    again = run_harness(*BASE, "--results-dir", "after", "run", "stores-moved.toml", "--json", cwd=tmp_path, env=ENV)
    assert again.returncode == 0, again.stderr
    assert load_json(again)["parent_run_id"] == parent and "delivered" not in again.stderr
    synced = run_harness(*BASE, "--results-dir", "after", "sync", "--tracking-uri", moved, "--json", cwd=tmp_path,
                         env=ENV)  # fmt: skip
    assert synced.returncode == 0 and all(report["delivered"] == 0 for report in load_json(synced)), synced.stdout
    assert [run.info.run_id for run in parents(moved, "stores-moved")] == [parent]
    counts = deliveries(moved, "stores-moved")
    assert len(counts) == 6 and set(counts.values()) == {1}


def test_two_spellings_of_one_server_url_are_one_store(tmp_path: Path, server: MlflowServer) -> None:
    write_suite(tmp_path, "stores-spelled")
    first = run_harness(*BASE, "run", "stores-spelled.toml", "--tracking-uri", server.uri, "--json", cwd=tmp_path,
                        env=ENV)  # fmt: skip
    assert first.returncode == 0, first.stderr
    other_spelling = server.uri.replace("127.0.0.1", "localhost") + "/"
    second = run_harness(*BASE, "run", "stores-spelled.toml", "--tracking-uri", other_spelling, "--json",
                         cwd=tmp_path, env=ENV)  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert load_json(second)["parent_run_id"] == load_json(first)["parent_run_id"]
    synced = run_harness(*BASE, "sync", "--tracking-uri", other_spelling, "--json", cwd=tmp_path, env=ENV)
    assert synced.returncode == 0 and all(report["delivered"] == 0 for report in load_json(synced)), synced.stdout
    assert len(parents(server.uri, "stores-spelled")) == 1
    counts = deliveries(server.uri, "stores-spelled")
    assert len(counts) == 6 and set(counts.values()) == {1}


def test_a_new_parents_sequence_follows_the_largest_even_in_a_store_written_before_the_sequence_metric(
    tmp_path: Path,
) -> None:
    from harness.record import SuiteRunRecord
    from harness.tracking.store import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'seq.db'}"
    tracker = MlflowTracker(uri)

    def record(config: str) -> SuiteRunRecord:
        return SuiteRunRecord(suite="seq", profile="smoke", config_id=config, cell_keys=[], tracking_uri=uri)

    old = tracker.start_parent(record("old"))
    # As an older harness wrote it: the sequence as a tag only, and a large one.
    tracker.client.set_tag(old, layout.SEQUENCE, "41")
    history = tracker.client.get_metric_history(old, layout.SEQUENCE_METRIC)
    assert history, "a new parent carries its sequence as a metric"
    # Drop the metric, so the store looks like one written before it existed.
    import sqlite3

    with sqlite3.connect(tmp_path / "seq.db") as db:
        db.execute("delete from metrics where run_uuid = ?", (old,))
        db.execute("delete from latest_metrics where run_uuid = ?", (old,))
    first = tracker.start_parent(record("first"))
    second = tracker.start_parent(record("second"))
    sequences = [int(tracker.client.get_run(run).data.tags[layout.SEQUENCE]) for run in (first, second)]
    assert sequences == [42, 43]
