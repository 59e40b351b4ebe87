import pytest

from ml_backend.errors import SchemaError
from ml_backend.schema import parse_label_config
from tests.plugins.backend import SCHEMAS, schema_xml


@pytest.mark.parametrize("name", sorted(p.stem for p in SCHEMAS.glob("*.xml")))
def test_every_shipped_schema_parses_and_has_a_header(name):
    xml = schema_xml(name)
    assert xml.lstrip().startswith("<!--") and f"schema: {name}" in xml and "Title:" in xml
    spec = parse_label_config(xml)
    assert spec.controls and spec.value_fields == ("text",)


def test_medical_records_labels():
    spec = parse_label_config(schema_xml("medical_records"))
    (ctl,) = spec.span_controls
    assert ctl.labels == ("Disease", "Medication", "Symptom", "Procedure", "Dosage")
    assert not spec.choice_controls


def test_contracts_mixes_spans_and_two_choices():
    spec = parse_label_config(schema_xml("contracts"))
    assert spec.span_controls[0].labels == ("Party", "Date", "Amount", "Governing law", "Term", "Obligation")
    names = {c.name: c for c in spec.choice_controls}
    assert set(names) == {"contract_type", "risk"}
    assert names["risk"].labels == ("low", "medium", "high") and not names["risk"].multi


def test_financial_news():
    spec = parse_label_config(schema_xml("financial_news"))
    assert spec.choice_controls[0].labels == ("positive", "neutral", "negative")
    assert spec.span_controls[0].labels == ("Company", "Person", "Money", "Percent", "Location")


def test_user_config_with_other_names_multi_choice_and_field():
    xml = """<View><Text name="doc" value="$body"/>
      <Labels name="ents" toName="doc"><Label value="Gene"/><Label value="Drug"/></Labels>
      <Choices name="topics" toName="doc" choice="multiple"><Choice value="a"/><Choice value="b"/></Choices></View>"""
    spec = parse_label_config(xml)
    assert spec.value_fields == ("body",)
    assert spec.control("ents").to_name == "doc" and spec.control("topics").multi


@pytest.mark.parametrize(
    "xml, needle",
    [
        ("not xml at all <", "not valid XML"),
        ("", "non-empty"),
        ("<View><Text name='t' value='$text'/></View>", "no supported control"),
        ("<View><Image name='i' value='$img'/><Choices name='c' toName='i'><Choice value='x'/></Choices></View>", "not a Text object"),
        ("<View><Text name='t' value='$text'/><Labels name='l' toName='t'></Labels></View>", "no <Label>"),
        ("<View><Text name='t' value='text'/><Labels name='l' toName='t'><Label value='A'/></Labels></View>", "$field"),
    ],
)
def test_bad_configs_name_the_problem(xml, needle):
    with pytest.raises(SchemaError, match=None) as exc:
        parse_label_config(xml)
    assert needle in str(exc.value)


def test_non_string_config():
    with pytest.raises(SchemaError):
        parse_label_config(42)
