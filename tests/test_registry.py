"""The registry: every path under the models root is validated; scikit-learn models are saved without pickles."""
import json
import os

import joblib
import numpy as np
import pytest

from ml_backend.errors import UnsafePath
from ml_backend.models import Examples, TfidfClassifier, load_model
from ml_backend.registry import ProjectModel, Registry, control_dirname
from ml_backend.schema import parse_label_config

XML = '<View><Text name="text" value="$text"/><Choices name="s" toName="text"><Choice value="up"/><Choice value="down"/></Choices></View>'
TEXTS, TARGETS = ["shares rise", "profit up", "shares fall", "loss widens"] * 2, [["up"], ["up"], ["down"], ["down"]] * 2


def fitted(multi=False):
    m = TfidfClassifier(["up", "down"], multi=multi)
    m.fit(Examples(TEXTS, TARGETS))
    return m


@pytest.mark.parametrize("project", ["/tmp/x", "../x", "1/../../x", "a\0b", "..", "", "1.5", 5])
def test_path_refuses_a_key_that_is_not_validated(tiny_settings, project):
    with pytest.raises(UnsafePath):
        Registry(tiny_settings).path(project, file="serving.json")


@pytest.mark.parametrize("version", ["..", "../../etc", "/abs", "a/b", "v\0"])
def test_path_refuses_unsafe_versions(tiny_settings, version):
    with pytest.raises(UnsafePath):
        Registry(tiny_settings).path("3", version)


def test_paths_stay_under_the_root_and_unsafe_control_names_are_hashed(tiny_settings):
    reg = Registry(tiny_settings)
    root = os.path.abspath(tiny_settings.models_dir)
    assert str(reg.path("3", "v1", "sentiment")) == os.path.join(root, "3", "v1", "sentiment")
    odd = reg.path("3", "v1", "../../../outside")
    assert os.path.dirname(odd) == os.path.join(root, "3", "v1") and odd.name == control_dirname("../../../outside")
    assert odd.name.startswith("control-")


def test_a_pointer_naming_an_unsafe_version_is_ignored(tiny_settings):
    reg = Registry(tiny_settings)
    ptr = reg.path("4", file="serving.json")
    ptr.parent.mkdir(parents=True)
    ptr.write_text(json.dumps({"version": "../../elsewhere"}))
    assert reg.pointer("4") is None and reg.current_version("4") == "coldstart"


@pytest.mark.parametrize("multi", [False, True])
def test_tfidf_saves_skops_and_json_not_pickles_and_loads_the_same(tmp_path, multi):
    m = fitted(multi)
    m.save(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["goldloop_model.json", "tfidf_lr.json", "tfidf_lr.skops"]
    back = load_model(tmp_path / "m")
    assert np.allclose(back.probabilities(["shares rise", "loss"]), m.probabilities(["shares rise", "loss"]))


def test_a_skops_file_naming_an_untrusted_type_is_refused_and_the_control_serves_cold_start(tiny_settings, tmp_path):
    """A tampered model file cannot make the backend import and call arbitrary code: skops refuses the type."""
    import skops.io as sio

    spec = parse_label_config(XML)
    reg = Registry(tiny_settings)
    vdir = reg.promote("6", ProjectModel(spec, "v-good", {"s": fitted()}))
    sio.dump({"pipeline": os.system}, vdir / "s" / "tfidf_lr.skops")  # a function: not a trusted type
    with pytest.raises(TypeError):
        load_model(vdir / "s")
    pm = Registry(tiny_settings).get("6", spec)
    assert pm.version == "v-good" and pm.meta["cold_start"] == ["s"]


def test_a_joblib_model_goldloop_wrote_before_skops_still_loads(tmp_path):
    m = fitted()
    m.save(tmp_path / "m")
    (tmp_path / "m" / "tfidf_lr.skops").unlink()
    (tmp_path / "m" / "tfidf_lr.json").unlink()
    joblib.dump({"pipeline": m.pipeline, "cols": None, "const": None}, tmp_path / "m" / "tfidf_lr.joblib")
    assert load_model(tmp_path / "m").predict(["shares rise"])[0].probs == m.predict(["shares rise"])[0].probs


def test_promote_then_a_fresh_registry_serves_the_version(tiny_settings):
    spec = parse_label_config(XML)
    Registry(tiny_settings).promote("7", ProjectModel(spec, "v-7", {"s": fitted()}))
    reg = Registry(tiny_settings)
    assert reg.current_version("7") == "v-7" and reg.get("7", spec).version == "v-7"
    assert [v["version"] for v in reg.versions()] == ["v-7"] and reg.versions("7")[0]["serving"] is True
