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
