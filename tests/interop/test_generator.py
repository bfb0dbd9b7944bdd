"""The synthetic hospital: deterministic for a seed, valid FHIR, written by its command."""

from __future__ import annotations

import io
import json

from django.core.management import call_command
from fhir.resources.R4B import get_fhir_model_class

from fixtures import fhir_hospital


def test_same_seed_same_bytes_and_every_resource_validates(tmp_path):
    first = fhir_hospital.write(fhir_hospital.generate(patients=8, seed=3), tmp_path / "a")
    second = fhir_hospital.write(fhir_hospital.generate(patients=8, seed=3), tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    other = fhir_hospital.write(fhir_hospital.generate(patients=8, seed=4), tmp_path / "c")
    assert [p.read_bytes() for p in first] != [p.read_bytes() for p in other]
    for path in first:
        assert path.name == f"{path.name.split('.')[0]}.ndjson"
        for line in path.read_text().splitlines():
            resource = json.loads(line)
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_the_command_writes_one_file_per_type(tmp_path):
    out = io.StringIO()
    call_command("generate_fhir_hospital", "--patients", "3", "--out", str(tmp_path), stdout=out)
    written = sorted(p.name for p in tmp_path.glob("*.ndjson"))
    assert written == sorted(f"{kind}.ndjson" for kind in fhir_hospital.RESOURCE_TYPES)
    assert len((tmp_path / "Patient.ndjson").read_text().splitlines()) == 3
    assert out.getvalue().count(".ndjson") == len(written)


def test_the_streaming_export_writes_the_same_bytes_with_results_summaries_and_slots(tmp_path):
    held = fhir_hospital.write(fhir_hospital.generate(patients=9, seed=5), tmp_path / "memory")
    streamed = fhir_hospital.export(tmp_path / "stream", patients=9, seed=5)
    assert [p.name for p in streamed] == [p.name for p in held]
    assert [p.read_bytes() for p in streamed] == [p.read_bytes() for p in held]
    lines = {p.name.split(".")[0]: [json.loads(line) for line in p.read_text().splitlines()] for p in streamed}
    codes = {o["code"]["coding"][0]["code"] for o in lines["Observation"]}
    assert {"718-7", "2345-7"} <= codes  # a blood count and a metabolic panel
    flags = {o["interpretation"][0]["coding"][0]["code"] for o in lines["Observation"] if "interpretation" in o}
    assert flags == {"N", "L", "H"}
    assert any(r["category"][0]["coding"][0]["code"] == "GE" for r in lines["DiagnosticReport"])
    kinds = {c["attachment"]["contentType"] for d in lines["DocumentReference"] for c in d["content"]}
    assert kinds == {"text/plain; charset=utf-8", "application/pdf"}
    assert {s["status"] for s in lines["Slot"]} == {"free", "busy", "busy-unavailable"}
