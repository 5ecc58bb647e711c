"""A consumer reads what its producer ran: the producer's parameters (overrides included) and its chains."""
import numpy as np
import pytest

from resonance_utils import chain, config, publish, records, run_notebooks, specs, store


def _producer_run(overrides=None, generations=2):
    """02's configuration with overrides, a small in-memory-made chain in a run folder, and its record."""
    cfg = config.load_config("02_mnist_chains", "smoke", **(overrides or {}))
    step = lambda x, ctx: x + 1  # noqa: E731
    result = chain.run_chain(step, np.zeros(3), generations, run_dir=store.data_dir() / "runs" / "toy" / "k",
                             progress=False)
    outputs = publish.Outputs(cfg, data_source="test")
    records.write(outputs, {"label_guided": result})
    return cfg, result


def test_a_consumer_sees_the_producers_override_and_its_chain():
    _, result = _producer_run({"strength": 0.5})
    consumer = config.load_config("05_drift_geometry", "smoke")
    rec = records.read(consumer, "02_mnist_chains")
    assert rec.params.strength == 0.5 and "strength" in rec.params  # not the profile's 0.35
    assert rec.spec(specs.DiffusionChainSpec).strength == 0.5
    assert rec.spec(specs.DiffusionChainSpec, n_generations=9).n_generations == 9
    back = rec.chain("label_guided")
    assert [s.tolist() for s in back.states] == [s.tolist() for s in result.states]
    assert rec.run_dir("label_guided") == result.run_dir


def test_a_missing_producer_says_which_notebook_to_run():
    consumer = config.load_config("05_drift_geometry", "smoke")
    with pytest.raises(records.MissingRecord, match=r"run 02_mnist_chains first \(./run_all.sh --only 02_mnist_chains "
                                                     r"--profile smoke"):
        records.read(consumer, "02_mnist_chains")


def test_an_undeclared_producer_is_refused():
    _producer_run()
    consumer = config.load_config("06_recursive_diffusion", "smoke")
    with pytest.raises(config.ConfigError, match="06_recursive_diffusion does not declare that it reads 02"):
        records.read(consumer, "02_mnist_chains")


def test_a_chain_gone_from_its_folder_is_reported(tmp_path):
    import shutil

    _, result = _producer_run()
    shutil.rmtree(chain.gen_dir(result.run_dir, 2))
    rec = records.read(config.load_config("05_drift_geometry", "smoke"), "02_mnist_chains")
    with pytest.raises(records.MissingRecord, match="rerun 02_mnist_chains"):
        rec.chain("label_guided")
    with pytest.raises(records.MissingRecord, match="recorded no chain 'unconditional'"):
        rec.chain("unconditional")


def test_a_producer_that_runs_again_reruns_its_consumers():
    before = run_notebooks.inputs_hash("05_drift_geometry", "smoke", {})
    unrelated = run_notebooks.inputs_hash("06_recursive_diffusion", "smoke", {})
    _producer_run()
    first = run_notebooks.inputs_hash("05_drift_geometry", "smoke", {})
    _producer_run({"strength": 0.5})
    second = run_notebooks.inputs_hash("05_drift_geometry", "smoke", {})
    assert len({before, first, second}) == 3
    # a notebook that does not read 02 keeps its key through both of 02's runs
    assert run_notebooks.inputs_hash("06_recursive_diffusion", "smoke", {}) == unrelated


def test_a_record_from_another_version_asks_for_a_rerun():
    _producer_run()
    path = records.record_path("02_mnist_chains", "smoke")
    rec = store.read_json(path)
    rec["params"]["strength"] = 7.0  # a value this version refuses
    store.write_json(path, rec)
    with pytest.raises(records.MissingRecord, match="does not accept.*rerun 02_mnist_chains"):
        records.read(config.load_config("05_drift_geometry", "smoke"), "02_mnist_chains")


def test_a_consumers_outputs_name_the_producer_runs_they_were_made_from():
    _producer_run({"strength": 0.5})
    consumer = config.load_config("05_drift_geometry", "smoke")
    rec = records.read(consumer, "02_mnist_chains")
    out = publish.Outputs(consumer, data_source="test")
    out.numbers({"x": 1})
    entry = store.read_manifest(out.dir)["05_drift_geometry.json"]
    assert entry["read"] == {"02_mnist_chains": rec.run_id}
    assert entry["params"]["fid_n"] == consumer.fid_n


def test_the_chains_come_back_in_the_order_the_producer_ran_them():
    cfg = config.load_config("02_mnist_chains", "smoke")
    step = lambda x, ctx: x + 1  # noqa: E731
    results = {name: chain.run_chain(step, np.zeros(2), 1, run_dir=store.data_dir() / "runs" / name / "k",
                                     progress=False) for name in ("latent_feedback", "label_guided", "unconditional")}
    records.write(publish.Outputs(cfg, data_source="test"), results)
    rec = records.read(config.load_config("09_claim", "smoke"), "02_mnist_chains")
    assert list(rec.chains) == ["latent_feedback", "label_guided", "unconditional"]  # not sorted
