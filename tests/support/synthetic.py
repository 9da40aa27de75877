"""Synthea-like patient Bundles, made here, deterministically, for the tests and `make bench`.

A bundle is one synthetic patient's history as a FHIR R4 transaction Bundle, shaped the way
Synthea writes its US Core output: the patient with race, ethnicity and geolocation
extensions; organizations, practitioners, roles and locations as conditional creates;
years of encounters, each with vital signs and lab panels (decimals with their own text,
blood-pressure components), conditions, procedures, medication orders and administrations,
immunizations, notes as DiagnosticReports and DocumentReferences (base64 text), claims and
explanations of benefit (with contained Coverage and ServiceRequest), care plans, care
teams, goals, allergies, devices, imaging studies, supply deliveries, and a Provenance.
Everything comes from a seeded `random.Random` and a fixed calendar: the same seed gives the
same bytes on every machine, and nothing depends on today's date.

    from tests.support.synthetic import bundle_bytes
    raw = bundle_bytes("large")              # about 3.4 MB of JSON

    python -m tests.support.synthetic large > bundle.json
"""

from __future__ import annotations

import base64
import random
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson

JSON = dict[str, Any]

SYNTHEA = "https://github.com/synthetichealth/synthea"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
NPI = "http://hl7.org/fhir/sid/us-npi"
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'
PROFILES = {
    "vital-signs": "http://hl7.org/fhir/StructureDefinition/vitalsigns",
    "laboratory": US_CORE + "us-core-observation-lab",
    "social-history": US_CORE + "us-core-smokingstatus",
}


@dataclass(frozen=True)
class Size:
    """How much history a named bundle holds."""

    seed: int
    years: int


# The bundles the tests and the benchmark use. "large" is over 3 MB, like the biggest
# Synthea files in the wild.
SIZES = {
    "small": Size(seed=11, years=1),
    "medium": Size(seed=22, years=4),
    "large": Size(seed=33, years=14),
}

START = datetime(1958, 3, 14, 9, 0, tzinfo=timezone(timedelta(hours=-5)))

FAMILY = ("Buckridge", "Okafor", "Kreiger", "Purdy", "Nakamura", "Alvarez", "Lindqvist", "Haddad")
GIVEN_F = ("Almeta", "Adaeze", "Emery", "Yuki", "Lucia", "Ingrid", "Mariam", "Rosalind")
GIVEN_M = ("Clemente", "Kwame", "Tobias", "Kenji", "Mateo", "Lars", "Omar", "Wilfred")
CITIES = (
    ("Boston", "02118", Decimal("42.336424"), Decimal("-71.072583")),
    ("Worcester", "01608", Decimal("42.262593"), Decimal("-71.802293")),
    ("Springfield", "01103", Decimal("42.101483"), Decimal("-72.589811")),
    ("Lowell", "01852", Decimal("42.633425"), Decimal("-71.316172")),
)
STREETS = ("Maple Ave", "Harbor St", "Chestnut Row", "Elm Court", "Quarry Rd", "Juniper Way")

ENCOUNTER_TYPES = (
    ("162673000", "General examination of patient (procedure)", "AMB"),
    ("185345009", "Encounter for symptom", "AMB"),
    ("185349003", "Encounter for check up (procedure)", "AMB"),
    ("50849002", "Emergency room admission (procedure)", "EMER"),
    ("183452005", "Emergency hospital admission (procedure)", "IMP"),
    ("390906007", "Follow-up encounter (procedure)", "AMB"),
)
CONDITIONS = (
    ("444814009", "Viral sinusitis (disorder)"),
    ("195662009", "Acute viral pharyngitis (disorder)"),
    ("10509002", "Acute bronchitis (disorder)"),
    ("38341003", "Hypertension (disorder)"),
    ("15777000", "Prediabetes (finding)"),
    ("162864005", "Body mass index 30+ - obesity (finding)"),
    ("55822004", "Hyperlipidemia (disorder)"),
    ("40055000", "Chronic sinusitis (disorder)"),
    ("233678006", "Childhood asthma (disorder)"),
    ("72892002", "Normal pregnancy (finding)"),
)
PROCEDURES = (
    ("430193006", "Medication reconciliation (procedure)"),
    ("710824005", "Assessment of health and social care needs (procedure)"),
    ("171207006", "Depression screening (procedure)"),
    ("428191000124101", "Documentation of current medications (procedure)"),
    ("117015009", "Throat culture (procedure)"),
    ("73761001", "Colonoscopy (procedure)"),
)
MEDICATIONS = (
    ("314076", "lisinopril 10 MG Oral Tablet"),
    ("197361", "amlodipine 5 MG Oral Tablet"),
    ("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet"),
    ("308182", "Amoxicillin 250 MG Oral Capsule"),
    ("313782", "Acetaminophen 325 MG Oral Tablet"),
    ("895994", "120 ACTUAT Fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler"),
)
VACCINES = (
    ("140", "Influenza, seasonal, injectable, preservative free"),
    ("113", "Td (adult) preservative free"),
    ("133", "Pneumococcal conjugate PCV 13"),
    ("121", "zoster"),
    ("208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free"),
)
ALLERGIES = (
    ("300916003", "Latex allergy (finding)", "environment"),
    ("91935009", "Allergy to peanuts (finding)", "food"),
    ("294505008", "Allergy to amoxicillin (finding)", "medication"),
    ("419474003", "Allergy to mould (finding)", "environment"),
)
# Lab panel members: LOINC code, display, unit, low, high, decimal places.
METABOLIC_PANEL = (
    ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 70, 140, 1),
    ("6299-2", "Urea nitrogen [Mass/volume] in Blood", "mg/dL", 7, 21, 1),
    ("38483-4", "Creatinine [Mass/volume] in Blood", "mg/dL", Decimal("0.6"), Decimal("1.3"), 2),
    ("49765-1", "Calcium [Mass/volume] in Blood", "mg/dL", Decimal("8.5"), Decimal("10.2"), 2),
    ("2947-0", "Sodium [Moles/volume] in Blood", "mmol/L", 136, 145, 1),
    ("6298-4", "Potassium [Moles/volume] in Blood", "mmol/L", Decimal("3.5"), Decimal("5.1"), 2),
    ("2069-3", "Chloride [Moles/volume] in Blood", "mmol/L", 98, 107, 1),
    ("20565-8", "Carbon dioxide, total [Moles/volume] in Blood", "mmol/L", 22, 29, 1),
)
LIPID_PANEL = (
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 150, 260, 1),
    ("2571-8", "Triglycerides", "mg/dL", 80, 220, 1),
    ("18262-6", "Low Density Lipoprotein Cholesterol", "mg/dL", 70, 170, 1),
    ("2085-9", "High Density Lipoprotein Cholesterol", "mg/dL", 35, 80, 1),
)
CBC_PANEL = (
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 4, 11, 2),
    ("789-8", "Erythrocytes [#/volume] in Blood by Automated count", "10*6/uL", 4, 6, 2),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 12, 17, 1),
    ("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", "%", 36, 50, 1),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 150, 400, 1),
)
PANELS = (
    ("51990-0", "Basic metabolic panel - Blood", METABOLIC_PANEL),
    ("57698-3", "Lipid panel with direct LDL - Serum or Plasma", LIPID_PANEL),
    ("58410-2", "CBC panel - Blood by Automated count", CBC_PANEL),
)
NOTE_SENTENCES = (
    "Patient is a {age} year-old {sex} presenting for {reason}.",
    "Denies fever, chills or night sweats.",
    "Blood pressure reviewed; lifestyle changes discussed.",
    "Continue current medications and return in three months.",
    "Lungs clear to auscultation bilaterally; no wheeze.",
    "Reports good adherence to the medication plan.",
    "Labs ordered: basic metabolic panel and lipid panel.",
    "Counseled on diet, exercise and sleep hygiene.",
    "No known drug interactions with the new prescription.",
    "Follow up with primary care if symptoms persist beyond ten days.",
)


class _Maker:
    """One bundle's state: the random source, the calendar and what was made so far."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.entries: list[JSON] = []
        self.made: list[str] = []

    # ---- primitives ---------------------------------------------------------------------------

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def decimal(self, low: Decimal | int, high: Decimal | int, places: int) -> Decimal:
        value = Decimal(str(low)) + (Decimal(str(high)) - Decimal(str(low))) * Decimal(
            str(self.rng.random())
        )
        # Keep the trailing zeros the text has ("72.40"): the tests check they survive.
        return value.quantize(Decimal(1).scaleb(-places))

    def pick(self, options: tuple[Any, ...]) -> Any:
        return options[self.rng.randrange(len(options))]

    @staticmethod
    def date_time(moment: datetime) -> str:
        return moment.isoformat(timespec="seconds")

    @staticmethod
    def instant(moment: datetime) -> str:
        return moment.isoformat(timespec="milliseconds")

    # ---- bundle ------------------------------------------------------------------------------

    def add(self, resource: JSON, if_none_exist: str | None = None) -> str:
        """Add a transaction entry; its urn:uuid reference."""
        full_url = f"urn:uuid:{resource['id']}"
        request: JSON = {"method": "POST", "url": resource["resourceType"]}
        if if_none_exist:
            request["ifNoneExist"] = if_none_exist
        self.entries.append({"fullUrl": full_url, "resource": resource, "request": request})
        self.made.append(full_url)
        return full_url


def _coding(system: str, code: str, display: str) -> JSON:
    return {"system": system, "code": code, "display": display}


def _concept(system: str, code: str, display: str) -> JSON:
    return {"coding": [_coding(system, code, display)], "text": display}


def _narrative(text: str) -> JSON:
    return {"status": "generated", "div": f"<div {XHTML}>{text}</div>"}


def _money(value: Decimal) -> JSON:
    return {"value": value, "currency": "USD"}


def _conditional(resource_type: str, system: str, value: str) -> str:
    return f"{resource_type}?identifier={system}|{value}"


class _Patient:
    """The patient's record, built encounter by encounter."""

    def __init__(self, maker: _Maker, years: int) -> None:
        self.m = maker
        self.years = years
        rng = maker.rng
        self.female = rng.random() < 0.5
        self.family = maker.pick(FAMILY)
        self.given = maker.pick(GIVEN_F if self.female else GIVEN_M)
        self.display = f"{'Mrs.' if self.female else 'Mr.'} {self.given} {self.family}"
        self.city = maker.pick(CITIES)
        self.birth = START - timedelta(days=rng.randrange(20 * 365, 30 * 365))
        self.ref = ""
        self.conditions: list[str] = []

    def make(self) -> None:
        self.providers()
        self.patient()
        self.allergies_and_devices()
        moment = START
        end = START + timedelta(days=365 * self.years)
        while moment < end:
            self.encounter(moment)
            moment += timedelta(days=self.m.rng.randrange(40, 110), hours=self.m.rng.randrange(8))
        self.provenance(moment)

    # ---- who and where -------------------------------------------------------------------

    def providers(self) -> None:
        m = self.m
        self.organization_id = m.uuid()
        org = {
            "resourceType": "Organization",
            "id": self.organization_id,
            "meta": {"profile": [US_CORE + "us-core-organization"]},
            "extension": [
                {
                    "url": "http://synthetichealth.github.io/synthea/utilization-encounters-extension",
                    "valueInteger": m.rng.randrange(100, 5000),
                }
            ],
            "identifier": [{"system": SYNTHEA, "value": self.organization_id}],
            "active": True,
            "type": [
                _concept(
                    "http://terminology.hl7.org/CodeSystem/organization-type",
                    "prov",
                    "Healthcare Provider",
                )
            ],
            "name": f"{self.city[0].upper()} COMMUNITY HEALTH CENTER",
            "telecom": [{"system": "phone", "value": f"617-555-{m.rng.randrange(10000):04d}"}],
            "address": [self.address()],
        }
        m.add(org, f"identifier={SYNTHEA}|{self.organization_id}")
        self.organization = {
            "reference": _conditional("Organization", SYNTHEA, self.organization_id),
            "display": org["name"],
        }
        self.location_id = m.uuid()
        location = {
            "resourceType": "Location",
            "id": self.location_id,
            "identifier": [{"system": SYNTHEA, "value": self.location_id}],
            "status": "active",
            "name": org["name"],
            "telecom": org["telecom"],
            "address": self.address(),
            "position": {"longitude": self.city[3], "latitude": self.city[2]},
            "managingOrganization": self.organization,
        }
        m.add(location, f"identifier={SYNTHEA}|{self.location_id}")
        self.location = {
            "reference": _conditional("Location", SYNTHEA, self.location_id),
            "display": org["name"],
        }
        self.practitioners: list[JSON] = []
        for _ in range(3):
            npi = f"99999{m.rng.randrange(10**5):05d}"
            female = m.rng.random() < 0.5
            given = m.pick(GIVEN_F if female else GIVEN_M)
            family = m.pick(FAMILY)
            practitioner = {
                "resourceType": "Practitioner",
                "id": m.uuid(),
                "meta": {"profile": [US_CORE + "us-core-practitioner"]},
                "identifier": [{"system": NPI, "value": npi}],
                "active": True,
                "name": [{"family": family, "given": [given], "prefix": ["Dr."]}],
                "telecom": [
                    {
                        "extension": [
                            {
                                "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-direct",
                                "valueBoolean": True,
                            }
                        ],
                        "system": "email",
                        "value": f"{given}.{family}@example.com",
                        "use": "work",
                    }
                ],
                "address": [self.address()],
                "gender": "female" if female else "male",
            }
            m.add(practitioner, f"identifier={NPI}|{npi}")
            reference = {
                "reference": _conditional("Practitioner", NPI, npi),
                "display": f"Dr. {given} {family}",
            }
            self.practitioners.append(reference)
            role = {
                "resourceType": "PractitionerRole",
                "id": m.uuid(),
                "meta": {"profile": [US_CORE + "us-core-practitionerrole"]},
                "practitioner": reference,
                "organization": self.organization,
                "code": [
                    _concept("http://nucc.org/provider-taxonomy", "208D00000X", "General Practice")
                ],
                "specialty": [
                    _concept("http://nucc.org/provider-taxonomy", "208D00000X", "General Practice")
                ],
                "location": [self.location],
                "telecom": [{"system": "phone", "value": "617-555-0100"}],
            }
            m.add(role)

    def address(self) -> JSON:
        m = self.m
        city, postal, latitude, longitude = self.city
        return {
            "line": [f"{m.rng.randrange(1, 999)} {m.pick(STREETS)}"],
            "city": city,
            "state": "MA",
            "postalCode": postal,
            "country": "US",
        }

    def patient(self) -> None:
        m = self.m
        city, postal, latitude, longitude = self.city
        patient_id = m.uuid()
        jitter = Decimal(m.rng.randrange(-9999, 9999)).scaleb(-6)
        resource = {
            "resourceType": "Patient",
            "id": patient_id,
            "meta": {"profile": [US_CORE + "us-core-patient"]},
            "text": _narrative(
                f'Generated by <a href="{SYNTHEA}">Synthea</a>. Version identifier: synthetic'
            ),
            "extension": [
                {
                    "url": US_CORE + "us-core-race",
                    "extension": [
                        {
                            "url": "ombCategory",
                            "valueCoding": _coding(
                                "urn:oid:2.16.840.1.113883.6.238", "2106-3", "White"
                            ),
                        },
                        {"url": "text", "valueString": "White"},
                    ],
                },
                {
                    "url": US_CORE + "us-core-ethnicity",
                    "extension": [
                        {
                            "url": "ombCategory",
                            "valueCoding": _coding(
                                "urn:oid:2.16.840.1.113883.6.238",
                                "2186-5",
                                "Not Hispanic or Latino",
                            ),
                        },
                        {"url": "text", "valueString": "Not Hispanic or Latino"},
                    ],
                },
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
                    "valueString": f"{m.pick(GIVEN_F)} {m.pick(FAMILY)}",
                },
                {"url": US_CORE + "us-core-birthsex", "valueCode": "F" if self.female else "M"},
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                    "valueAddress": {"city": city, "state": "Massachusetts", "country": "US"},
                },
                {
                    "url": "http://synthetichealth.github.io/synthea/disability-adjusted-life-years",
                    "valueDecimal": m.decimal(0, 3, 15),
                },
                {
                    "url": "http://synthetichealth.github.io/synthea/quality-adjusted-life-years",
                    "valueDecimal": m.decimal(40, 80, 14),
                },
            ],
            "identifier": [
                {"system": SYNTHEA, "value": patient_id},
                {
                    "type": _concept(
                        "http://terminology.hl7.org/CodeSystem/v2-0203",
                        "MR",
                        "Medical Record Number",
                    ),
                    "system": "http://hospital.smarthealthit.org",
                    "value": patient_id,
                },
                {
                    "type": _concept(
                        "http://terminology.hl7.org/CodeSystem/v2-0203",
                        "SS",
                        "Social Security Number",
                    ),
                    "system": "http://hl7.org/fhir/sid/us-ssn",
                    "value": f"999-{m.rng.randrange(10, 99)}-{m.rng.randrange(1000, 9999)}",
                },
            ],
            "name": [
                {
                    "use": "official",
                    "family": self.family,
                    "given": [self.given],
                    "prefix": ["Mrs." if self.female else "Mr."],
                }
            ],
            "telecom": [
                {"system": "phone", "value": f"555-{m.rng.randrange(100, 999)}-0142", "use": "home"}
            ],
            "gender": "female" if self.female else "male",
            "birthDate": self.birth.date().isoformat(),
            "address": [
                {
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/StructureDefinition/geolocation",
                            "extension": [
                                {"url": "latitude", "valueDecimal": latitude + jitter},
                                {"url": "longitude", "valueDecimal": longitude - jitter},
                            ],
                        }
                    ],
                    **self.address(),
                }
            ],
            "maritalStatus": _concept(
                "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "M", "Married"
            ),
            "multipleBirthBoolean": False,
            "communication": [
                {"language": _concept("urn:ietf:bcp:47", "en-US", "English (United States)")}
            ],
        }
        self.ref = m.add(resource)
        self.subject = {"reference": self.ref, "display": self.display}

    def allergies_and_devices(self) -> None:
        m = self.m
        for code, display, category in m.rng.sample(ALLERGIES, 2):
            allergy = {
                "resourceType": "AllergyIntolerance",
                "id": m.uuid(),
                "meta": {"profile": [US_CORE + "us-core-allergyintolerance"]},
                "clinicalStatus": _concept(
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "active",
                    "Active",
                ),
                "verificationStatus": _concept(
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "confirmed",
                    "Confirmed",
                ),
                "type": "allergy",
                "category": [category],
                "criticality": m.pick(("low", "high")),
                "code": _concept(SNOMED, code, display),
                "patient": self.subject,
                "recordedDate": m.date_time(START + timedelta(days=m.rng.randrange(3000))),
                "reaction": [
                    {
                        "manifestation": [
                            _concept(SNOMED, "271807003", "Eruption of skin (disorder)")
                        ],
                        "severity": m.pick(("mild", "moderate")),
                    }
                ],
            }
            m.add(allergy)
        made = START + timedelta(days=m.rng.randrange(5000))
        expires = made + timedelta(days=3650)
        udi = f"(01){m.rng.randrange(10**13):014d}(11){made:%y%m%d}(17){expires:%y%m%d}"
        device = {
            "resourceType": "Device",
            "id": m.uuid(),
            "meta": {"profile": [US_CORE + "us-core-implantable-device"]},
            "udiCarrier": [{"deviceIdentifier": udi[4:18], "carrierHRF": udi}],
            "status": "active",
            "distinctIdentifier": udi[4:18],
            "manufactureDate": m.date_time(made),
            "expirationDate": m.date_time(expires),
            "lotNumber": f"{m.rng.randrange(10**6):06d}",
            "serialNumber": f"{m.rng.randrange(10**9):09d}",
            "deviceName": [{"name": "Coronary artery stent", "type": "user-friendly-name"}],
            "type": _concept(SNOMED, "705643001", "Coronary artery stent (physical object)"),
            "patient": {"reference": self.ref},
        }
        m.add(device)

    # ---- one encounter ---------------------------------------------------------------------

    def encounter(self, start: datetime) -> None:
        m = self.m
        code, display, klass = m.pick(ENCOUNTER_TYPES)
        end = start + timedelta(minutes=m.rng.choice((15, 30, 45, 60, 240)))
        practitioner = m.pick(tuple(self.practitioners))
        encounter_id = m.uuid()
        period = {"start": m.date_time(start), "end": m.date_time(end)}
        encounter = {
            "resourceType": "Encounter",
            "id": encounter_id,
            "meta": {"profile": [US_CORE + "us-core-encounter"]},
            "identifier": [{"use": "official", "system": SYNTHEA, "value": encounter_id}],
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass},
            "type": [_concept(SNOMED, code, display)],
            "subject": self.subject,
            "participant": [
                {
                    "type": [
                        _concept(
                            "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "PPRF",
                            "primary performer",
                        )
                    ],
                    "period": period,
                    "individual": practitioner,
                }
            ],
            "period": period,
            "location": [{"location": self.location}],
            "serviceProvider": self.organization,
        }
        here = {"reference": m.add(encounter)}
        context = (here, start, end, practitioner)
        diagnoses = [self.condition(context) for _ in range(m.rng.choice((0, 0, 1, 1, 2)))]
        self.vital_signs(context)
        for _ in range(m.rng.choice((0, 1, 1, 2))):
            self.lab_panel(context)
        procedures = [self.procedure(context, diagnoses) for _ in range(m.rng.choice((0, 1, 2)))]
        medications = [
            self.medication(context, diagnoses) for _ in range(m.rng.choice((0, 0, 1, 2)))
        ]
        if m.rng.random() < 0.3:
            self.immunization(context)
        if m.rng.random() < 0.1:
            self.imaging_study(context)
        if m.rng.random() < 0.15:
            self.care_plan(context, diagnoses)
        self.note(context, display)
        claim = self.claim(context, code, display, diagnoses, procedures, medications)
        self.explanation_of_benefit(context, claim, code, display, diagnoses)

    def condition(self, context: tuple[JSON, datetime, datetime, JSON]) -> str:
        m = self.m
        here, start, _, _ = context
        code, display = m.pick(CONDITIONS)
        resolved = m.rng.random() < 0.6
        condition: JSON = {
            "resourceType": "Condition",
            "id": m.uuid(),
            "meta": {"profile": [US_CORE + "us-core-condition"]},
            "clinicalStatus": _concept(
                "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "resolved" if resolved else "active",
                "Resolved" if resolved else "Active",
            ),
            "verificationStatus": _concept(
                "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "confirmed",
                "Confirmed",
            ),
            "category": [
                _concept(
                    "http://terminology.hl7.org/CodeSystem/condition-category",
                    "encounter-diagnosis",
                    "Encounter Diagnosis",
                )
            ],
            "code": _concept(SNOMED, code, display),
            "subject": {"reference": self.ref},
            "encounter": here,
            "onsetDateTime": m.date_time(start),
            "recordedDate": m.date_time(start),
        }
        if resolved:
            condition["abatementDateTime"] = m.date_time(
                start + timedelta(days=m.rng.randrange(5, 40))
            )
        reference = m.add(condition)
        self.conditions.append(reference)
        return reference

    def _observation(
        self,
        context: tuple[JSON, datetime, datetime, JSON],
        category: str,
        code: str,
        display: str,
        **value: Any,
    ) -> str:
        m = self.m
        here, start, _, _ = context
        observation = {
            "resourceType": "Observation",
            "id": m.uuid(),
            "meta": {"profile": [PROFILES[category]]},
            "status": "final",
            "category": [
                _concept(OBSERVATION_CATEGORY, category, category.replace("-", " ").title())
            ],
            "code": _concept(LOINC, code, display),
            "subject": {"reference": self.ref},
            "encounter": here,
            "effectiveDateTime": m.date_time(start),
            "issued": m.instant(start + timedelta(minutes=5)),
            **value,
        }
        return m.add(observation)

    def _quantity(self, value: Decimal, unit: str) -> JSON:
        return {"value": value, "unit": unit, "system": UCUM, "code": unit}

    def vital_signs(self, context: tuple[JSON, datetime, datetime, JSON]) -> list[str]:
        m = self.m
        made = [
            self._observation(
                context,
                "vital-signs",
                "8302-2",
                "Body Height",
                valueQuantity=self._quantity(m.decimal(150, 190, 1), "cm"),
            ),
            self._observation(
                context,
                "vital-signs",
                "29463-7",
                "Body Weight",
                valueQuantity=self._quantity(m.decimal(55, 110, 1), "kg"),
            ),
            self._observation(
                context,
                "vital-signs",
                "39156-5",
                "Body mass index (BMI) [Ratio]",
                valueQuantity=self._quantity(m.decimal(19, 36, 2), "kg/m2"),
            ),
            self._observation(
                context,
                "vital-signs",
                "85354-9",
                "Blood pressure panel with all children optional",
                component=[
                    {
                        "code": _concept(LOINC, "8462-4", "Diastolic Blood Pressure"),
                        "valueQuantity": self._quantity(Decimal(m.rng.randrange(60, 95)), "mm[Hg]"),
                    },
                    {
                        "code": _concept(LOINC, "8480-6", "Systolic Blood Pressure"),
                        "valueQuantity": self._quantity(
                            Decimal(m.rng.randrange(100, 160)), "mm[Hg]"
                        ),
                    },
                ],
            ),
            self._observation(
                context,
                "vital-signs",
                "8867-4",
                "Heart rate",
                valueQuantity=self._quantity(m.decimal(55, 100, 1), "/min"),
            ),
            self._observation(
                context,
                "vital-signs",
                "9279-1",
                "Respiratory rate",
                valueQuantity=self._quantity(m.decimal(12, 20, 1), "/min"),
            ),
            self._observation(
                context,
                "social-history",
                "72166-2",
                "Tobacco smoking status",
                valueCodeableConcept=_concept(
                    SNOMED, "266919005", "Never smoked tobacco (finding)"
                ),
            ),
        ]
        return made

    def lab_panel(self, context: tuple[JSON, datetime, datetime, JSON]) -> str:
        m = self.m
        here, start, _, practitioner = context
        panel_code, panel_display, members = m.pick(PANELS)
        results = [
            {
                "reference": self._observation(
                    context,
                    "laboratory",
                    code,
                    display,
                    valueQuantity=self._quantity(m.decimal(low, high, places), unit),
                ),
                "display": display,
            }
            for code, display, unit, low, high, places in members
        ]
        report = {
            "resourceType": "DiagnosticReport",
            "id": m.uuid(),
            "meta": {"profile": [US_CORE + "us-core-diagnosticreport-lab"]},
            "status": "final",
            "category": [
                _concept("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory")
            ],
            "code": _concept(LOINC, panel_code, panel_display),
            "subject": {"reference": self.ref},
            "encounter": here,
            "effectiveDateTime": m.date_time(start),
            "issued": m.instant(start + timedelta(hours=2)),
            "performer": [practitioner],
            "result": results,
        }
        return m.add(report)

    def procedure(
        self, context: tuple[JSON, datetime, datetime, JSON], diagnoses: list[str]
    ) -> str:
        m = self.m
        here, start, end, _ = context
        code, display = m.pick(PROCEDURES)
        procedure: JSON = {
            "resourceType": "Procedure",
            "id": m.uuid(),
            "meta": {"profile": [US_CORE + "us-core-procedure"]},
            "status": "completed",
            "code": _concept(SNOMED, code, display),
            "subject": {"reference": self.ref},
            "encounter": here,
            "performedPeriod": {"start": m.date_time(start), "end": m.date_time(end)},
            "location": self.location,
        }
        if diagnoses:
            procedure["reasonReference"] = [{"reference": diagnoses[0]}]
        return m.add(procedure)

    def medication(
        self, context: tuple[JSON, datetime, datetime, JSON], diagnoses: list[str]
    ) -> str:
        m = self.m
        here, start, _, practitioner = context
        code, display = m.pick(MEDICATIONS)
        request: JSON = {
            "resourceType": "MedicationRequest",
            "id": m.uuid(),
            "meta": {"profile": [US_CORE + "us-core-medicationrequest"]},
            "status": m.pick(("active", "stopped", "completed")),
            "intent": "order",
            "medicationCodeableConcept": _concept(RXNORM, code, display),
            "subject": {"reference": self.ref},
            "encounter": here,
            "authoredOn": m.date_time(start),
            "requester": practitioner,
            "dosageInstruction": [
                {
                    "sequence": 1,
                    "timing": {
                        "repeat": {
                            "frequency": m.rng.choice((1, 2, 3)),
                            "period": Decimal("1.0"),
                            "periodUnit": "d",
                        }
                    },
                    "asNeededBoolean": False,
                    "doseAndRate": [
                        {
                            "type": _concept(
                                "http://terminology.hl7.org/CodeSystem/dose-rate-type",
                                "ordered",
                                "Ordered",
                            ),
                            "doseQuantity": {"value": Decimal("1.0")},
                        }
                    ],
                }
            ],
        }
        if diagnoses:
            request["reasonReference"] = [{"reference": diagnoses[0]}]
        reference = m.add(request)
        if m.rng.random() < 0.5:
            administration = {
                "resourceType": "MedicationAdministration",
                "id": m.uuid(),
                "status": "completed",
                "medicationCodeableConcept": _concept(RXNORM, code, display),
                "subject": {"reference": self.ref},
                "context": here,
                "effectiveDateTime": m.date_time(start + timedelta(minutes=20)),
                "request": {"reference": reference},
                "dosage": {"dose": {"value": m.decimal(1, 2, 1), "unit": "{tbl}", "system": UCUM}},
            }
            m.add(administration)
        return reference

    def immunization(self, context: tuple[JSON, datetime, datetime, JSON]) -> None:
        m = self.m
        here, start, _, _ = context
        code, display = m.pick(VACCINES)
        m.add(
            {
                "resourceType": "Immunization",
                "id": m.uuid(),
                "meta": {"profile": [US_CORE + "us-core-immunization"]},
                "status": "completed",
                "vaccineCode": _concept(CVX, code, display),
                "patient": {"reference": self.ref},
                "encounter": here,
                "occurrenceDateTime": m.date_time(start),
                "primarySource": True,
                "location": self.location,
                "doseQuantity": {
                    "value": Decimal("0.5"),
                    "unit": "mL",
                    "system": UCUM,
                    "code": "mL",
                },
            }
        )

    def imaging_study(self, context: tuple[JSON, datetime, datetime, JSON]) -> None:
        m = self.m
        here, start, _, _ = context
        root = f"1.2.840.99999999.{m.rng.randrange(10**8)}"
        series = []
        for number in range(1, m.rng.randrange(2, 4)):
            series.append(
                {
                    "uid": f"{root}.{number}",
                    "number": number,
                    "modality": _coding(
                        "http://dicom.nema.org/resources/ontology/DCM", "DX", "Digital Radiography"
                    ),
                    "numberOfInstances": 2,
                    "bodySite": _coding(SNOMED, "51185008", "Thoracic structure (body structure)"),
                    "started": m.date_time(start),
                    "instance": [
                        {
                            "uid": f"{root}.{number}.{index}",
                            "sopClass": _coding(
                                "urn:ietf:rfc:3986",
                                "urn:oid:1.2.840.10008.5.1.4.1.1.1.1",
                                "Digital X-Ray Image Storage",
                            ),
                            "number": index,
                            "title": "Image of chest",
                        }
                        for index in (1, 2)
                    ],
                }
            )
        m.add(
            {
                "resourceType": "ImagingStudy",
                "id": m.uuid(),
                "identifier": [
                    {"use": "official", "system": "urn:ietf:rfc:3986", "value": f"urn:oid:{root}"}
                ],
                "status": "available",
                "subject": {"reference": self.ref},
                "encounter": here,
                "started": m.date_time(start),
                "numberOfSeries": len(series),
                "numberOfInstances": 2 * len(series),
                "procedureCode": [_concept(SNOMED, "399208008", "Plain chest X-ray (procedure)")],
                "location": self.location,
                "series": series,
            }
        )

    def care_plan(
        self, context: tuple[JSON, datetime, datetime, JSON], diagnoses: list[str]
    ) -> None:
        m = self.m
        here, start, _, practitioner = context
        team = m.add(
            {
                "resourceType": "CareTeam",
                "id": m.uuid(),
                "meta": {"profile": [US_CORE + "us-core-careteam"]},
                "status": "active",
                "subject": {"reference": self.ref},
                "encounter": here,
                "period": {"start": m.date_time(start)},
                "participant": [
                    {"role": [_concept(SNOMED, "116154003", "Patient")], "member": self.subject},
                    {
                        "role": [
                            _concept(SNOMED, "223366009", "Healthcare professional (occupation)")
                        ],
                        "member": practitioner,
                    },
                    {
                        "role": [
                            _concept(SNOMED, "224891009", "Healthcare services (qualifier value)")
                        ],
                        "member": self.organization,
                    },
                ],
                "managingOrganization": [self.organization],
            }
        )
        goal: JSON = {
            "resourceType": "Goal",
            "id": m.uuid(),
            "lifecycleStatus": "active",
            "description": {"text": "Maintain blood pressure below 140/90 mm[Hg]."},
            "subject": {"reference": self.ref},
            "target": [
                {
                    "measure": _concept(LOINC, "8480-6", "Systolic Blood Pressure"),
                    "detailQuantity": {
                        "value": Decimal("140.0"),
                        "unit": "mm[Hg]",
                        "system": UCUM,
                        "code": "mm[Hg]",
                    },
                    "dueDate": (start + timedelta(days=180)).date().isoformat(),
                }
            ],
        }
        if diagnoses:
            goal["addresses"] = [{"reference": d} for d in diagnoses]
        goal_ref = m.add(goal)
        plan: JSON = {
            "resourceType": "CarePlan",
            "id": m.uuid(),
            "meta": {"profile": [US_CORE + "us-core-careplan"]},
            "text": _narrative(
                "Care Plan for Hypertension.<br/>Activities: "
                "<ul><li>Lifestyle education</li><li>Diet</li></ul>"
            ),
            "status": "active",
            "intent": "order",
            "category": [
                _concept(
                    "http://hl7.org/fhir/us/core/CodeSystem/careplan-category",
                    "assess-plan",
                    "Assessment and Plan of Treatment",
                ),
                _concept(
                    SNOMED, "443402002", "Lifestyle education regarding hypertension (procedure)"
                ),
            ],
            "subject": {"reference": self.ref},
            "encounter": here,
            "period": {"start": m.date_time(start)},
            "careTeam": [{"reference": team}],
            "goal": [{"reference": goal_ref}],
            "activity": [
                {
                    "detail": {
                        "code": _concept(SNOMED, code, display),
                        "status": "in-progress",
                        "location": self.location,
                    }
                }
                for code, display in (
                    ("386463000", "Prescribed activity/exercise education (procedure)"),
                    ("413473000", "Counseling about alcohol consumption (procedure)"),
                    (
                        "1151000175103",
                        "Dietary approaches to stop hypertension diet (regime/therapy)",
                    ),
                )
            ],
        }
        if diagnoses:
            plan["addresses"] = [{"reference": d} for d in diagnoses]
        m.add(plan)
        m.add(
            {
                "resourceType": "SupplyDelivery",
                "id": m.uuid(),
                "status": "completed",
                "patient": {"reference": self.ref},
                "type": _concept(
                    "http://terminology.hl7.org/CodeSystem/supply-item-type", "device", "Device"
                ),
                "suppliedItem": {
                    "quantity": {"value": Decimal("1")},
                    "itemCodeableConcept": _concept(
                        SNOMED, "43516009", "Blood pressure cuff (physical object)"
                    ),
                },
                "occurrenceDateTime": m.date_time(start),
            }
        )

    def note(self, context: tuple[JSON, datetime, datetime, JSON], reason: str) -> None:
        m = self.m
        here, start, end, practitioner = context
        age = (start - self.birth).days // 365
        sentences = [
            NOTE_SENTENCES[0].format(
                age=age, sex="female" if self.female else "male", reason=reason.lower()
            )
        ] + m.rng.sample(NOTE_SENTENCES[1:], 5)
        text = (
            f"{start.date().isoformat()}\n\n# Chief Complaint\n{reason}\n\n# Assessment and Plan\n"
        )
        data = base64.b64encode((text + "\n".join(sentences) + "\n").encode()).decode()
        note_code = _concept(LOINC, "34117-2", "History and physical note")
        m.add(
            {
                "resourceType": "DiagnosticReport",
                "id": m.uuid(),
                "meta": {"profile": [US_CORE + "us-core-diagnosticreport-note"]},
                "status": "final",
                "category": [_concept(LOINC, "34117-2", "History and physical note")],
                "code": note_code,
                "subject": {"reference": self.ref},
                "encounter": here,
                "effectiveDateTime": m.date_time(start),
                "issued": m.instant(start),
                "performer": [practitioner],
                "presentedForm": [{"contentType": "text/plain; charset=utf-8", "data": data}],
            }
        )
        m.add(
            {
                "resourceType": "DocumentReference",
                "id": m.uuid(),
                "meta": {"profile": [US_CORE + "us-core-documentreference"]},
                "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{m.uuid()}"}],
                "status": "superseded" if m.rng.random() < 0.05 else "current",
                "type": _concept(LOINC, "34117-2", "History and physical note"),
                "category": [
                    _concept(
                        "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                        "clinical-note",
                        "Clinical Note",
                    )
                ],
                "subject": {"reference": self.ref},
                "date": m.instant(start),
                "author": [practitioner, self.organization],
                "custodian": self.organization,
                "content": [
                    {
                        "attachment": {"contentType": "text/plain; charset=utf-8", "data": data},
                        "format": _coding(
                            "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
                            "urn:ihe:iti:xds:2017:mimeTypeSufficient",
                            "mimeType Sufficient",
                        ),
                    }
                ],
                "context": {
                    "encounter": [here],
                    "period": {"start": m.date_time(start), "end": m.date_time(end)},
                },
            }
        )

    def claim(
        self,
        context: tuple[JSON, datetime, datetime, JSON],
        code: str,
        display: str,
        diagnoses: list[str],
        procedures: list[str],
        medications: list[str],
    ) -> tuple[str, Decimal]:
        m = self.m
        here, start, end, _ = context
        items: list[JSON] = [
            {
                "sequence": 1,
                "productOrService": _concept(SNOMED, code, display),
                "encounter": [here],
            }
        ]
        for index, _diagnosis in enumerate(diagnoses, start=1):
            items.append(
                {
                    "sequence": len(items) + 1,
                    "diagnosisSequence": [index],
                    "productOrService": _concept(SNOMED, code, display),
                }
            )
        total = Decimal("0.00")
        for index, _procedure in enumerate(procedures, start=1):
            net = m.decimal(50, 900, 2)
            total += net
            items.append(
                {
                    "sequence": len(items) + 1,
                    "procedureSequence": [index],
                    "productOrService": _concept(
                        SNOMED, "430193006", "Medication reconciliation (procedure)"
                    ),
                    "net": _money(net),
                }
            )
        claim: JSON = {
            "resourceType": "Claim",
            "id": m.uuid(),
            "status": "active",
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/claim-type",
                        "code": "professional",
                    }
                ]
            },
            "use": "claim",
            "patient": self.subject,
            "billablePeriod": {"start": m.date_time(start), "end": m.date_time(end)},
            "created": m.date_time(end),
            "provider": self.organization,
            "priority": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/processpriority",
                        "code": "normal",
                    }
                ]
            },
            "facility": self.location,
            "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Medicare"}}],
            "item": items,
            "total": _money(total + m.decimal(60, 180, 2)),
        }
        if diagnoses:
            claim["diagnosis"] = [
                {"sequence": i, "diagnosisReference": {"reference": d}}
                for i, d in enumerate(diagnoses, start=1)
            ]
        if procedures:
            claim["procedure"] = [
                {"sequence": i, "procedureReference": {"reference": p}}
                for i, p in enumerate(procedures, start=1)
            ]
        if medications:
            claim["prescription"] = {"reference": medications[0]}
        return m.add(claim), claim["total"]["value"]

    def explanation_of_benefit(
        self,
        context: tuple[JSON, datetime, datetime, JSON],
        claim: tuple[str, Decimal],
        code: str,
        display: str,
        diagnoses: list[str],
    ) -> None:
        m = self.m
        here, start, end, practitioner = context
        claim_ref, total = claim
        covered = (total * Decimal("0.8")).quantize(Decimal("0.01"))
        adjudication_category = "http://terminology.hl7.org/CodeSystem/adjudication"
        eob: JSON = {
            "resourceType": "ExplanationOfBenefit",
            "id": m.uuid(),
            "contained": [
                {
                    "resourceType": "ServiceRequest",
                    "id": "referral",
                    "status": "completed",
                    "intent": "order",
                    "subject": {"reference": self.ref},
                    "requester": practitioner,
                    "performer": [practitioner],
                },
                {
                    "resourceType": "Coverage",
                    "id": "coverage",
                    "status": "active",
                    "type": {"text": "Medicare"},
                    "beneficiary": {"reference": self.ref},
                    "payor": [{"display": "Medicare"}],
                },
            ],
            "identifier": [
                {
                    "system": "https://bluebutton.cms.gov/resources/variables/clm_id",
                    "value": m.uuid(),
                }
            ],
            "status": "active",
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/claim-type",
                        "code": "professional",
                    }
                ]
            },
            "use": "claim",
            "patient": {"reference": self.ref},
            "billablePeriod": {"start": m.date_time(start), "end": m.date_time(end)},
            "created": m.date_time(end),
            "insurer": {"display": "Medicare"},
            "provider": practitioner,
            "referral": {"reference": "#referral"},
            "facility": self.location,
            "claim": {"reference": claim_ref},
            "outcome": "complete",
            "careTeam": [
                {
                    "sequence": 1,
                    "provider": practitioner,
                    "role": _concept(
                        "http://terminology.hl7.org/CodeSystem/claimcareteamrole",
                        "primary",
                        "Primary provider",
                    ),
                }
            ],
            "insurance": [
                {"focal": True, "coverage": {"reference": "#coverage", "display": "Medicare"}}
            ],
            "item": [
                {
                    "sequence": 1,
                    "category": _concept(
                        "https://bluebutton.cms.gov/resources/variables/line_cms_type_srvc_cd",
                        "1",
                        "Medical care",
                    ),
                    "productOrService": _concept(SNOMED, code, display),
                    "servicedPeriod": {"start": m.date_time(start), "end": m.date_time(end)},
                    "locationCodeableConcept": _concept(
                        "http://terminology.hl7.org/CodeSystem/ex-serviceplace",
                        "19",
                        "Off Campus-Outpatient Hospital",
                    ),
                    "encounter": [here],
                    "net": _money(total),
                    "adjudication": [
                        {
                            "category": _concept(
                                "https://bluebutton.cms.gov/resources/codesystem/adjudication",
                                "https://bluebutton.cms.gov/resources/variables/line_coinsrnc_amt",
                                "Line Beneficiary Coinsurance Amount",
                            ),
                            "amount": _money(total - covered),
                        },
                        {
                            "category": _concept(
                                "https://bluebutton.cms.gov/resources/codesystem/adjudication",
                                "https://bluebutton.cms.gov/resources/variables/line_prvdr_pmt_amt",
                                "Line Provider Payment Amount",
                            ),
                            "amount": _money(covered),
                        },
                        {
                            "category": _concept(
                                adjudication_category, "submitted", "Submitted Amount"
                            ),
                            "amount": _money(total),
                        },
                    ],
                }
            ],
            "total": [
                {
                    "category": _concept(adjudication_category, "submitted", "Submitted Amount"),
                    "amount": _money(total),
                }
            ],
            "payment": {"amount": _money(covered)},
        }
        if diagnoses:
            eob["diagnosis"] = [
                {
                    "sequence": i,
                    "diagnosisReference": {"reference": d},
                    "type": [
                        _concept(
                            "http://terminology.hl7.org/CodeSystem/ex-diagnosistype",
                            "principal",
                            "Principal Diagnosis",
                        )
                    ],
                }
                for i, d in enumerate(diagnoses, start=1)
            ]
        m.add(eob)

    def provenance(self, moment: datetime) -> None:
        m = self.m
        m.add(
            {
                "resourceType": "Provenance",
                "id": m.uuid(),
                "meta": {"profile": [US_CORE + "us-core-provenance"]},
                "target": [{"reference": ref} for ref in m.made],
                "recorded": m.instant(moment),
                "agent": [
                    {
                        "type": _concept(
                            "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "author",
                            "Author",
                        ),
                        "who": self.practitioners[0],
                        "onBehalfOf": self.organization,
                    },
                    {
                        "type": _concept(
                            "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "transmitter",
                            "Transmitter",
                        ),
                        "who": self.practitioners[0],
                        "onBehalfOf": self.organization,
                    },
                ],
            }
        )


def patient_bundle(seed: int, years: int) -> JSON:
    """One synthetic patient's `years` of history as a transaction Bundle (plain JSON data,
    decimals as `Decimal`)."""
    maker = _Maker(seed)
    _Patient(maker, years).make()
    return {"resourceType": "Bundle", "type": "transaction", "entry": maker.entries}


def _exact_decimal(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"cannot write {type(value).__name__}")


def bundle_bytes(size: str = "large") -> bytes:
    """The named bundle (`small`, `medium`, `large`) as indented JSON, like Synthea writes."""
    spec = SIZES[size]
    return orjson.dumps(
        patient_bundle(spec.seed, spec.years), default=_exact_decimal, option=orjson.OPT_INDENT_2
    )


def main(argv: list[str]) -> int:
    size = argv[0] if argv else "large"
    if size not in SIZES:
        print(f"usage: python -m tests.support.synthetic [{'|'.join(SIZES)}]", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(bundle_bytes(size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
