"""Extraction tasks whose answer is stated in their instructions: the set of bench.real_text and real-weights tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RealTask:
    """One task: instructions that state the answer, the schema, and the right answer (None for a refusal)."""

    id: str  # unique, kebab-case
    category: str  # one of CATEGORIES
    instructions: str
    schema: dict[str, Any]
    answer: dict[str, Any] | None  # None only for category "refusal"


CATEGORIES = (
    "enum",
    "nested",
    "array",
    "optional",
    "date",
    "pattern",
    "range",
    "unbounded-number",
    "non-ascii",
    "quotes",
    "backslash",
    "long-text",
    "refusal",
)


# Schema builders: each call makes a fresh dict, so no two tasks share (and could mutate) one node.
def _str(**kw: Any) -> dict[str, Any]:
    return {"type": "string", **kw}


def _num(**kw: Any) -> dict[str, Any]:
    return {"type": "number", **kw}


def _int(**kw: Any) -> dict[str, Any]:
    return {"type": "integer", **kw}


def _bool() -> dict[str, Any]:
    return {"type": "boolean"}


def _arr(items: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"type": "array", "items": items, **kw}


def _obj(properties: dict[str, Any], *optional: str, closed: bool = True) -> dict[str, Any]:
    """An object schema requiring every property but `optional`, closed to other keys unless `closed` is False."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": [k for k in properties if k not in optional],
    }
    if closed:
        schema["additionalProperties"] = False
    return schema


_ENUM: tuple[RealTask, ...] = (
    RealTask(
        "enum-parcel-service",
        "enum",
        "The parcel label reads: service EXPRESS, zone B, fragile: yes. "
        "Extract the service level, the zone and whether it is fragile.",
        _obj(
            {
                "service": _str(enum=["STANDARD", "EXPRESS", "OVERNIGHT"]),
                "zone": _str(enum=["A", "B", "C", "D"]),
                "fragile": _bool(),
            }
        ),
        {"service": "EXPRESS", "zone": "B", "fragile": True},
    ),
    RealTask(
        "enum-work-order-priority",
        "enum",
        "The work order card reads: ticket WO-5531, priority 2, status open. "
        "Extract the ticket number, the priority (1 to 3) and the status.",
        _obj(
            {
                "ticket": _str(),
                "priority": _int(enum=[1, 2, 3]),
                "status": _str(enum=["open", "in progress", "closed"]),
            }
        ),
        {"ticket": "WO-5531", "priority": 2, "status": "open"},
    ),
    RealTask(
        "enum-paint-finish",
        "enum",
        "The paint tin says: colour Ocean Blue, finish satin, size 2.5 litres. "
        "Extract the colour name, the finish and the size in litres.",
        _obj(
            {
                "colour_name": _str(),
                "finish": _str(enum=["matt", "satin", "gloss"]),
                "litres": _num(),
            }
        ),
        {"colour_name": "Ocean Blue", "finish": "satin", "litres": 2.5},
    ),
    RealTask(
        "enum-blood-group",
        "enum",
        "The donor card reads: blood group AB-, donor since 2011. "
        "Extract the blood group and the year the donor started.",
        _obj(
            {
                "blood_group": _str(enum=["A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-"]),
                "donor_since": _int(),
            }
        ),
        {"blood_group": "AB-", "donor_since": 2011},
    ),
    RealTask(
        "enum-garment-size",
        "enum",
        "The garment tag reads: size XL, fit slim, material organic cotton. "
        "Extract the size, the fit and the material.",
        _obj(
            {
                "size": _str(enum=["XS", "S", "M", "L", "XL", "XXL"]),
                "fit": _str(enum=["slim", "regular", "loose"]),
                "material": _str(),
            }
        ),
        {"size": "XL", "fit": "slim", "material": "organic cotton"},
    ),
    RealTask(
        "enum-class-weekday",
        "enum",
        "The gym timetable card says: class Spin, day Thursday, room 4. "
        "Extract the class name, the day of the week and the room number.",
        _obj(
            {
                "class_name": _str(),
                "day": _str(enum=["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]),
                "room": _int(),
            }
        ),
        {"class_name": "Spin", "day": "Thursday", "room": 4},
    ),
)

_NESTED: tuple[RealTask, ...] = (
    RealTask(
        "nested-sender-recipient",
        "nested",
        "The label reads: from Acme Tools, 12 Mill Road, Leeds; to Jane Park, 4 Elm Street, Bristol. "
        "Extract the sender and the recipient, each with name, street and city.",
        _obj(
            {
                "sender": _obj({"name": _str(), "street": _str(), "city": _str()}),
                "recipient": _obj({"name": _str(), "street": _str(), "city": _str()}),
            }
        ),
        {
            "sender": {"name": "Acme Tools", "street": "12 Mill Road", "city": "Leeds"},
            "recipient": {"name": "Jane Park", "street": "4 Elm Street", "city": "Bristol"},
        },
    ),
    RealTask(
        "nested-nameplate-rating",
        "nested",
        "The nameplate reads: model HX90, maker Vortex; rated 230 V, 50 Hz, 1.2 kW. "
        "Extract the model, the maker and the rating (volts, hertz, kilowatts).",
        _obj(
            {
                "model": _str(),
                "maker": _str(),
                "rating": _obj({"volts": _int(), "hertz": _int(), "kilowatts": _num()}),
            }
        ),
        {"model": "HX90", "maker": "Vortex", "rating": {"volts": 230, "hertz": 50, "kilowatts": 1.2}},
    ),
    RealTask(
        "nested-sample-collection",
        "nested",
        "The sample tube label reads: patient P40112, collected by nurse Okafor on ward 7, bed 3. "
        "Extract the patient ID and the collection: the nurse and the location (ward and bed).",
        _obj(
            {
                "patient_id": _str(),
                "collection": _obj(
                    {
                        "nurse": _str(),
                        "location": _obj({"ward": _int(), "bed": _int()}),
                    }
                ),
            }
        ),
        {"patient_id": "P40112", "collection": {"nurse": "Okafor", "location": {"ward": 7, "bed": 3}}},
    ),
    RealTask(
        "nested-library-slip",
        "nested",
        "The library slip reads: title The Quiet Harbour, author Mara Lind, shelf C4, row 2. "
        "Extract the book (title and author) and its place (shelf and row).",
        _obj(
            {
                "book": _obj({"title": _str(), "author": _str()}),
                "place": _obj({"shelf": _str(), "row": _int()}),
            }
        ),
        {"book": {"title": "The Quiet Harbour", "author": "Mara Lind"}, "place": {"shelf": "C4", "row": 2}},
    ),
    RealTask(
        "nested-invoice-header",
        "nested",
        "The invoice header reads: invoice INV2093, customer Bolt & Sons, VAT ID GB123456789, total 418.60 EUR. "
        "Extract the invoice number, the customer (name and VAT ID) and the total (amount and currency).",
        _obj(
            {
                "invoice_number": _str(),
                "customer": _obj({"name": _str(), "vat_id": _str()}),
                "total": _obj({"amount": _num(), "currency": _str()}),
            }
        ),
        {
            "invoice_number": "INV2093",
            "customer": {"name": "Bolt & Sons", "vat_id": "GB123456789"},
            "total": {"amount": 418.6, "currency": "EUR"},
        },
    ),
    RealTask(
        "nested-greenhouse-plant",
        "nested",
        "The greenhouse tag reads: species Solanum lycopersicum, variety Moneymaker; tray 12, water every 2 days. "
        "Extract the plant (species and variety) and the care plan (tray and watering interval in days).",
        _obj(
            {
                "plant": _obj({"species": _str(), "variety": _str()}),
                "care": _obj({"tray": _int(), "water_every_days": _int()}),
            }
        ),
        {
            "plant": {"species": "Solanum lycopersicum", "variety": "Moneymaker"},
            "care": {"tray": 12, "water_every_days": 2},
        },
    ),
)

_ARRAY: tuple[RealTask, ...] = (
    RealTask(
        "array-jar-ingredients",
        "array",
        "The jar label lists the ingredients: oats, honey, almonds, sea salt. Net weight 450 g. "
        "Extract the ingredients as a list and the net weight in grams.",
        _obj({"ingredients": _arr(_str(), minItems=1), "net_weight_g": _num()}),
        {"ingredients": ["oats", "honey", "almonds", "sea salt"], "net_weight_g": 450},
    ),
    RealTask(
        "array-logger-readings",
        "array",
        "The logger display shows the last four readings: 21.4, 21.9, 22.3, 20.75 degrees. "
        "Extract the readings as a list of numbers.",
        _obj({"readings": _arr(_num(), minItems=4, maxItems=4)}),
        {"readings": [21.4, 21.9, 22.3, 20.75]},
    ),
    RealTask(
        "array-receipt-items",
        "array",
        "The receipt lists: 2 x coffee at 3.20 each, 1 x bagel at 2.75 each. "
        "Extract the items, each with its name, quantity and unit price.",
        _obj({"items": _arr(_obj({"name": _str(), "quantity": _int(), "unit_price": _num()}), minItems=1)}),
        {
            "items": [
                {"name": "coffee", "quantity": 2, "unit_price": 3.2},
                {"name": "bagel", "quantity": 1, "unit_price": 2.75},
            ]
        },
    ),
    RealTask(
        "array-folder-tags",
        "array",
        "The folder tab reads: project Falcon, tags: urgent, legal, archived. Extract the project name and the tags.",
        _obj({"project": _str(), "tags": _arr(_str(), maxItems=5)}),
        {"project": "Falcon", "tags": ["urgent", "legal", "archived"]},
    ),
    RealTask(
        "array-business-card-phones",
        "array",
        "The business card reads: Dr. Ines Walter, phone +49 30 1234567, mobile +49 171 5550199. "
        "Extract the name and the phone numbers as a list.",
        _obj({"name": _str(), "phones": _arr(_str(), minItems=1, maxItems=3)}),
        {"name": "Dr. Ines Walter", "phones": ["+49 30 1234567", "+49 171 5550199"]},
    ),
    RealTask(
        "array-bus-stops",
        "array",
        "The bus timetable for line 42 lists its stops in order: Central Station, Market Square, Hill Park, Airport. "
        "Extract the line number and the stops in order.",
        _obj({"line": _int(), "stops": _arr(_str(), minItems=2)}),
        {"line": 42, "stops": ["Central Station", "Market Square", "Hill Park", "Airport"]},
    ),
)

_OPTIONAL: tuple[RealTask, ...] = (
    RealTask(
        "optional-badge-no-email",
        "optional",
        "The visitor badge reads: name Tom Reyes, company Lumen Labs. "
        "Extract the name, the company and the email if shown.",
        _obj({"name": _str(), "company": _str(), "email": _str()}, "email"),
        {"name": "Tom Reyes", "company": "Lumen Labs"},
    ),
    RealTask(
        "optional-price-tag-sale",
        "optional",
        "The price tag reads: item Desk Lamp, price 39.99, sale price 29.99. "
        "Extract the item, the price, and the sale price and currency if shown.",
        _obj({"item": _str(), "price": _num(), "sale_price": _num(), "currency": _str()}, "sale_price", "currency"),
        {"item": "Desk Lamp", "price": 39.99, "sale_price": 29.99},
    ),
    RealTask(
        "optional-parcel-no-phone",
        "optional",
        "The parcel label reads: recipient Ana Costa, postcode 1050-123. "
        "Extract the recipient, the postcode, and the phone number and apartment number where given.",
        _obj(
            {"recipient": _str(), "postcode": _str(), "phone": _str(), "apartment": _int()},
            "phone",
            "apartment",
        ),
        {"recipient": "Ana Costa", "postcode": "1050-123"},
    ),
    RealTask(
        "optional-pharmacy-label",
        "optional",
        "The pharmacy label reads: Amoxicillin 500 mg, take 3 times daily. "
        "Extract the drug, the dose in mg, the times per day and the duration in days if stated.",
        _obj(
            {"drug": _str(), "dose_mg": _num(), "times_per_day": _int(), "duration_days": _int()},
            "duration_days",
        ),
        {"drug": "Amoxicillin", "dose_mg": 500, "times_per_day": 3},
    ),
    RealTask(
        "optional-concert-ticket",
        "optional",
        "The ticket reads: event Jazz Night, seat 14F, gate 3. "
        "Extract the event, the seat, and the gate and row if shown.",
        _obj({"event": _str(), "seat": _str(), "gate": _int(), "row": _str()}, "gate", "row"),
        {"event": "Jazz Night", "seat": "14F", "gate": 3},
    ),
    RealTask(
        "optional-parking-permit",
        "optional",
        "The parking permit reads: plate KL 482 ZT, colour silver. "
        "Extract the plate, and the colour, make and model of the car where given.",
        _obj({"plate": _str(), "colour": _str(), "make": _str(), "model": _str()}, "colour", "make", "model"),
        {"plate": "KL 482 ZT", "colour": "silver"},
    ),
)

_DATE: tuple[RealTask, ...] = (
    RealTask(
        "date-carton-best-before",
        "date",
        "The carton is stamped: best before 2025-11-30, packed 2025-05-02, lot 7781. "
        "Extract the best-before date, the packing date and the lot number.",
        _obj({"best_before": _str(format="date"), "packed": _str(format="date"), "lot": _int()}),
        {"best_before": "2025-11-30", "packed": "2025-05-02", "lot": 7781},
    ),
    RealTask(
        "date-boarding-pass",
        "date",
        "The boarding pass reads: flight LX 318, departs 2024-09-14T06:45:00Z, boarding 06:15:00Z. "
        "Extract the flight, the departure date-time and the boarding time.",
        _obj({"flight": _str(), "departs": _str(format="date-time"), "boarding": _str(format="time")}),
        {"flight": "LX 318", "departs": "2024-09-14T06:45:00Z", "boarding": "06:15:00Z"},
    ),
    RealTask(
        "date-meeting-note",
        "date",
        "The meeting note reads: review on 2024-02-29 from 14:30:00+01:00 to 16:00:00+01:00 in room B2. "
        "Extract the date, the start time, the end time and the room.",
        _obj(
            {
                "date": _str(format="date"),
                "start": _str(format="time"),
                "end": _str(format="time"),
                "room": _str(),
            }
        ),
        {"date": "2024-02-29", "start": "14:30:00+01:00", "end": "16:00:00+01:00", "room": "B2"},
    ),
    RealTask(
        "date-warranty-card",
        "date",
        "The warranty card reads: purchased 2023-07-18, warranty ends 2026-07-18, serial QZ88120. "
        "Extract the purchase date, the end date and the serial.",
        _obj({"purchased": _str(format="date"), "warranty_ends": _str(format="date"), "serial": _str()}),
        {"purchased": "2023-07-18", "warranty_ends": "2026-07-18", "serial": "QZ88120"},
    ),
    RealTask(
        "date-log-line",
        "date",
        "The log line reads: 2024-12-31T23:59:58+09:00 ERROR disk full on node7. "
        "Extract the timestamp, the level and the host.",
        _obj({"timestamp": _str(format="date-time"), "level": _str(), "host": _str()}),
        {"timestamp": "2024-12-31T23:59:58+09:00", "level": "ERROR", "host": "node7"},
    ),
)

_PATTERN: tuple[RealTask, ...] = (
    RealTask(
        "pattern-container-seal",
        "pattern",
        "The container door reads: MSCU 4821739, seal SL-0092. Extract the container code and the seal number.",
        _obj({"container": _str(pattern="^[A-Z]{4} \\d{7}$"), "seal": _str(pattern="^[A-Z]{2}-\\d{4}$")}),
        {"container": "MSCU 4821739", "seal": "SL-0092"},
    ),
    RealTask(
        "pattern-uk-postcode",
        "pattern",
        "The envelope reads: to 10 Downing Street, London SW1A 2AA. Extract the street, the city and the postcode.",
        _obj(
            {
                "street": _str(),
                "city": _str(),
                "postcode": _str(pattern="^[A-Z]{1,2}\\d[A-Z\\d]? \\d[A-Z]{2}$"),
            }
        ),
        {"street": "10 Downing Street", "city": "London", "postcode": "SW1A 2AA"},
    ),
    RealTask(
        "pattern-iban-slip",
        "pattern",
        "The payment slip reads: IBAN DE89370400440532013000, amount 120.00. Extract the IBAN and the amount.",
        _obj({"iban": _str(pattern="^[A-Z]{2}\\d{2}[A-Z0-9]{11,30}$"), "amount": _num()}),
        {"iban": "DE89370400440532013000", "amount": 120.0},
    ),
    RealTask(
        "pattern-hex-swatch",
        "pattern",
        "The swatch card reads: Sunset Orange, hex #FF7F50. Extract the colour name and the hex code.",
        _obj({"name": _str(), "hex": _str(pattern="^#[0-9A-Fa-f]{6}$")}),
        {"name": "Sunset Orange", "hex": "#FF7F50"},
    ),
    RealTask(
        "pattern-bin-part-number",
        "pattern",
        "The bin label reads: part number 04-7731-B, quantity 250. Extract the part number and the quantity.",
        _obj({"part_number": _str(pattern="^\\d{2}-\\d{4}-[A-Z]$"), "quantity": _int()}),
        {"part_number": "04-7731-B", "quantity": 250},
    ),
    RealTask(
        "pattern-badge-email",
        "pattern",
        "The staff badge reads: Kim Sato, kim.sato@example.org. Extract the name and the email address.",
        _obj({"name": _str(), "email": _str(pattern="^[^@\\s]+@[^@\\s]+\\.[a-z]+$")}),
        {"name": "Kim Sato", "email": "kim.sato@example.org"},
    ),
)

_RANGE: tuple[RealTask, ...] = (
    RealTask(
        "range-battery-status",
        "range",
        "The battery screen reads: charge 87 percent, temperature 31.5 degrees, 412 cycles. "
        "Extract the charge, the temperature and the cycle count.",
        _obj(
            {
                "charge_percent": _int(minimum=0, maximum=100),
                "temperature": _num(minimum=-20, maximum=60),
                "cycles": _int(minimum=0),
            }
        ),
        {"charge_percent": 87, "temperature": 31.5, "cycles": 412},
    ),
    RealTask(
        "range-review-rating",
        "range",
        "The review card reads: rating 4.5 out of 5, reviewer Lee Chan. Extract the rating and the reviewer.",
        _obj({"rating": _num(minimum=0, maximum=5, multipleOf=0.5), "reviewer": _str()}),
        {"rating": 4.5, "reviewer": "Lee Chan"},
    ),
    RealTask(
        "range-tyre-pressure",
        "range",
        "The tyre gauge shows 2.4 bar at the front and 2.6 bar at the rear. "
        "Extract the front and rear pressures in bar.",
        _obj(
            {
                "front_bar": _num(exclusiveMinimum=0, maximum=4),
                "rear_bar": _num(exclusiveMinimum=0, maximum=4),
            }
        ),
        {"front_bar": 2.4, "rear_bar": 2.6},
    ),
    RealTask(
        "range-shoe-box",
        "range",
        "The shoe box label reads: EU size 42, width grade 3, colour navy. "
        "Extract the EU size, the width grade and the colour.",
        _obj(
            {
                "eu_size": _int(minimum=35, maximum=50),
                "width_grade": _int(minimum=1, maximum=5),
                "colour": _str(),
            }
        ),
        {"eu_size": 42, "width_grade": 3, "colour": "navy"},
    ),
    RealTask(
        "range-fabric-blend",
        "range",
        "The fabric label reads: 65 percent polyester, 35 percent cotton, roll length 10 metres. "
        "Extract the polyester and cotton percentages and the roll length in metres.",
        _obj(
            {
                "polyester": _int(minimum=0, maximum=100, multipleOf=5),
                "cotton": _int(minimum=0, maximum=100, multipleOf=5),
                "roll_m": _num(exclusiveMinimum=0),
            }
        ),
        {"polyester": 65, "cotton": 35, "roll_m": 10},
    ),
)

_UNBOUNDED: tuple[RealTask, ...] = (
    RealTask(
        "unbounded-freezer-temperatures",
        "unbounded-number",
        "The freezer display reads -12.5 degrees inside and 4.25 degrees in the door. "
        "Extract the inside and door temperatures.",
        _obj({"inside": _num(), "door": _num()}),
        {"inside": -12.5, "door": 4.25},
    ),
    RealTask(
        "unbounded-shelf-price",
        "unbounded-number",
        "The shelf label reads: saffron, price 1200 per kilo, unit price 0.25 per gram. "
        "Extract the product, the price per kilo and the unit price per gram.",
        _obj({"product": _str(), "price_per_kg": _num(), "price_per_g": _num()}),
        {"product": "saffron", "price_per_kg": 1200, "price_per_g": 0.25},
    ),
    RealTask(
        "unbounded-calculator",
        "unbounded-number",
        "The calculator display reads 3.14159 and its memory shows 2.71828. "
        "Extract the display value and the memory value.",
        _obj({"display": _num(), "memory": _num()}),
        {"display": 3.14159, "memory": 2.71828},
    ),
    RealTask(
        "unbounded-weighbridge",
        "unbounded-number",
        "The weighbridge ticket reads: gross 15420 kg, tare 3260.5 kg, net 12159.5 kg. "
        "Extract the gross, tare and net weights in kg.",
        _obj({"gross_kg": _num(), "tare_kg": _num(), "net_kg": _num()}),
        {"gross_kg": 15420, "tare_kg": 3260.5, "net_kg": 12159.5},
    ),
    RealTask(
        "unbounded-turnstile",
        "unbounded-number",
        "The turnstile counter reads 104857 entries and 98 exits today. Extract the number of entries and of exits.",
        _obj({"entries": _int(), "exits": _int()}),
        {"entries": 104857, "exits": 98},
    ),
    RealTask(
        "unbounded-trail-sign",
        "unbounded-number",
        "The trail sign reads: elevation 2962 m, descent -430 m to the lake, distance 7.8 km. "
        "Extract the elevation, the descent and the distance.",
        _obj({"elevation_m": _num(), "descent_m": _num(), "distance_km": _num()}),
        {"elevation_m": 2962, "descent_m": -430, "distance_km": 7.8},
    ),
    RealTask(
        "unbounded-bench-meter",
        "unbounded-number",
        "The bench meter reads 0.0042 A at 12 V, resistance 2857.14 ohm. "
        "Extract the current in amps, the voltage and the resistance.",
        _obj({"current_a": _num(), "voltage_v": _num(), "resistance_ohm": _num()}),
        {"current_a": 0.0042, "voltage_v": 12, "resistance_ohm": 2857.14},
    ),
)

_NON_ASCII: tuple[RealTask, ...] = (
    RealTask(
        "non-ascii-munich-sender",
        "non-ascii",
        "Das Etikett lautet: Absender Müller GmbH, Hauptstraße 5, 80331 München. "
        "Extract the sender, the street, the postcode and the city.",
        _obj({"sender": _str(), "street": _str(), "postcode": _str(), "city": _str()}),
        {"sender": "Müller GmbH", "street": "Hauptstraße 5", "postcode": "80331", "city": "München"},
    ),
    RealTask(
        "non-ascii-ferry-ticket",
        "non-ascii",
        "The ferry ticket reads: from Ærøskøbing to Svendborg, passenger Søren Ørsted. "
        "Extract the origin, the destination and the passenger.",
        _obj({"origin": _str(), "destination": _str(), "passenger": _str()}),
        {"origin": "Ærøskøbing", "destination": "Svendborg", "passenger": "Søren Ørsted"},
    ),
    RealTask(
        "non-ascii-tokyo-package",
        "non-ascii",
        "The package label reads: 宛先 東京都渋谷区, 氏名 山田太郎, weight 1.5 kg. "
        "Extract the address, the name and the weight in kg.",
        _obj({"address": _str(), "name": _str(), "weight_kg": _num()}),
        {"address": "東京都渋谷区", "name": "山田太郎", "weight_kg": 1.5},
    ),
    RealTask(
        "non-ascii-greek-bakery",
        "non-ascii",
        "The shop sign reads: Φούρνος Αθηνά, Οδός Ερμού 12, Αθήνα. Extract the shop name, the street and the city.",
        _obj({"shop": _str(), "street": _str(), "city": _str()}),
        {"shop": "Φούρνος Αθηνά", "street": "Οδός Ερμού 12", "city": "Αθήνα"},
    ),
    RealTask(
        "non-ascii-microscope-slide",
        "non-ascii",
        "The microscope slide reads: sample Probe 7, thickness 5 µm, store at 4 °C. "
        "Extract the sample, the thickness, its unit and the storage temperature as written.",
        _obj({"sample": _str(), "thickness": _num(), "unit": _str(), "storage": _str()}),
        {"sample": "Probe 7", "thickness": 5, "unit": "µm", "storage": "4 °C"},
    ),
    RealTask(
        "non-ascii-french-dessert",
        "non-ascii",
        "L'étiquette indique : Crème brûlée, 125 g, fabriquée à Besançon. "
        "Extract the product, the weight in grams and the town.",
        _obj({"product": _str(), "weight_g": _num(), "town": _str()}),
        {"product": "Crème brûlée", "weight_g": 125, "town": "Besançon"},
    ),
)

_QUOTES: tuple[RealTask, ...] = (
    RealTask(
        "quotes-pro-edition",
        "quotes",
        'The box reads: Loupe Studio, the "Pro" edition, version 3.2. '
        "Extract the product, the edition as written and the version.",
        _obj({"product": _str(), "edition": _str(), "version": _str()}),
        {"product": "Loupe Studio", "edition": 'the "Pro" edition', "version": "3.2"},
    ),
    RealTask(
        "quotes-inch-pipe",
        "quotes",
        'The pipe is stamped: 12" steel pipe, schedule 40, length 6 m. '
        "Extract the description, the schedule and the length in metres.",
        _obj({"description": _str(), "schedule": _int(), "length_m": _num()}),
        {"description": '12" steel pipe', "schedule": 40, "length_m": 6},
    ),
    RealTask(
        "quotes-plaque-quotation",
        "quotes",
        'The plaque reads: "Knowledge is power" - Francis Bacon, 1597. '
        "Extract the quotation with its quote marks, the author and the year.",
        _obj({"quotation": _str(), "author": _str(), "year": _int()}),
        {"quotation": '"Knowledge is power"', "author": "Francis Bacon", "year": 1597},
    ),
    RealTask(
        "quotes-name-tag-nickname",
        "quotes",
        'The name tag reads: Robert "Bobby" Tables, room 101. Extract the full name as written and the room number.',
        _obj({"full_name": _str(), "room": _int()}),
        {"full_name": 'Robert "Bobby" Tables', "room": 101},
    ),
    RealTask(
        "quotes-monitor-label",
        "quotes",
        'The monitor label reads: size 27", model "UltraView" Q27, refresh 144 Hz. '
        "Extract the size, the model and the refresh rate in Hz.",
        _obj({"size": _str(), "model": _str(), "refresh_hz": _int()}),
        {"size": '27"', "model": '"UltraView" Q27', "refresh_hz": 144},
    ),
)

_BACKSLASH: tuple[RealTask, ...] = (
    RealTask(
        "backslash-scan-path",
        "backslash",
        r"The scanner screen reads: saved to C:\Users\ana\scan.tif, 300 dpi. "
        "Extract the file path and the resolution in dpi.",
        _obj({"path": _str(), "dpi": _int()}),
        {"path": r"C:\Users\ana\scan.tif", "dpi": 300},
    ),
    RealTask(
        "backslash-network-share",
        "backslash",
        r"The sticker on the NAS reads: share \\srv\share\photos, owner it-team. Extract the share path and the owner.",
        _obj({"share": _str(), "owner": _str()}),
        {"share": r"\\srv\share\photos", "owner": "it-team"},
    ),
    RealTask(
        "backslash-filter-regex",
        "backslash",
        r"The config card reads: filter pattern ^\d{3}-\d{4}$, mode strict. "
        "Extract the pattern as written and the mode.",
        _obj({"pattern": _str(), "mode": _str(enum=["strict", "lenient"])}),
        {"pattern": r"^\d{3}-\d{4}$", "mode": "strict"},
    ),
    RealTask(
        "backslash-registry-key",
        "backslash",
        r"The note reads: key HKEY_LOCAL_MACHINE\SOFTWARE\Loupe, value CacheSize = 512. "
        "Extract the key path, the value name and the value.",
        _obj({"key": _str(), "value_name": _str(), "value": _int()}),
        {"key": r"HKEY_LOCAL_MACHINE\SOFTWARE\Loupe", "value_name": "CacheSize", "value": 512},
    ),
    RealTask(
        "backslash-escape-sequences",
        "backslash",
        r"The printout reads: separator \t, line end \r\n, encoding utf-8. "
        "Extract the separator, the line ending and the encoding, as written.",
        _obj({"separator": _str(), "line_end": _str(), "encoding": _str()}),
        {"separator": r"\t", "line_end": r"\r\n", "encoding": "utf-8"},
    ),
    RealTask(
        "backslash-backup-folder",
        "backslash",
        "The tape label reads: backup of D:\\Projects\\2024\\Q3\\ (trailing backslash), job 77. "
        "Extract the source folder and the job number.",
        _obj({"source": _str(), "job": _int()}),
        {"source": "D:\\Projects\\2024\\Q3\\", "job": 77},
    ),
)

_LONG_TEXT: tuple[RealTask, ...] = (
    RealTask(
        "long-text-water-notice",
        "long-text",
        "The notice on the door reads: Dear residents, the water supply to Block C will be switched off on Tuesday "
        "morning for essential maintenance of the main pipes. Work starts at 8 and should finish by noon. Please "
        "store enough drinking water for the morning and keep all taps closed during the work. We apologise for the "
        "inconvenience. Facilities Manager Ruth Adeyemi. "
        "Extract the block, the signer and the sentence telling residents what to do, copied exactly.",
        _obj({"block": _str(), "signed_by": _str(), "instruction": _str()}),
        {
            "block": "Block C",
            "signed_by": "Ruth Adeyemi",
            "instruction": "Please store enough drinking water for the morning "
            "and keep all taps closed during the work.",
        },
    ),
    RealTask(
        "long-text-catalogue-entry",
        "long-text",
        "The catalogue entry reads: Model TR8 Trail Runner. Price 129.95. These lightweight shoes have a breathable "
        "mesh upper, a cushioned midsole made from recycled foam, and a grippy rubber outsole designed for wet rocks "
        "and loose gravel. Available in sizes 36 to 47. Machine washable at 30 degrees. "
        "Extract the model, the price and the sentence starting with These lightweight shoes, copied exactly.",
        _obj({"model": _str(), "price": _num(), "description": _str()}),
        {
            "model": "TR8 Trail Runner",
            "price": 129.95,
            "description": "These lightweight shoes have a breathable mesh upper, a cushioned midsole made from "
            "recycled foam, and a grippy rubber outsole designed for wet rocks and loose gravel.",
        },
    ),
    RealTask(
        "long-text-incident-report",
        "long-text",
        "The incident report reads: Date 2024-06-03. Location: loading dock 2, north warehouse. Summary: A forklift "
        "reversing out of bay 4 clipped the corner of a pallet rack, bending one upright and dropping three boxes of "
        "ceramic tiles onto the floor. Nobody was injured and the area was closed until the rack was inspected. "
        "Reported by shift lead Marco Silva. "
        "Extract the date, the location, the reporter and the first summary sentence, copied exactly.",
        _obj({"date": _str(format="date"), "location": _str(), "reported_by": _str(), "summary": _str()}),
        {
            "date": "2024-06-03",
            "location": "loading dock 2, north warehouse",
            "reported_by": "Marco Silva",
            "summary": "A forklift reversing out of bay 4 clipped the corner of a pallet rack, bending one upright "
            "and dropping three boxes of ceramic tiles onto the floor.",
        },
    ),
    RealTask(
        "long-text-recipe-card",
        "long-text",
        "The recipe card reads: Lentil soup, serves 4. Step 1: Rinse 250 g of red lentils under cold water until the "
        "water runs clear, then leave them to drain in a sieve while you chop one onion, two carrots and a stick of "
        "celery. Step 2: Soften the vegetables in olive oil for ten minutes. Step 3: Add the lentils and 1.2 litres "
        "of stock and simmer for 25 minutes. "
        "Extract the dish, the number of servings and the text of step 1, copied exactly.",
        _obj({"dish": _str(), "servings": _int(minimum=1), "step_1": _str()}),
        {
            "dish": "Lentil soup",
            "servings": 4,
            "step_1": "Rinse 250 g of red lentils under cold water until the water runs clear, then leave them to "
            "drain in a sieve while you chop one onion, two carrots and a stick of celery.",
        },
    ),
    RealTask(
        "long-text-residents-letter",
        "long-text",
        "The letter reads: From Helen Brooks, Orchard Lane 9, Norwich. Subject: noise from the night bus depot. I am "
        "writing on behalf of the residents of Orchard Lane to ask that engines are no longer left running in the "
        "depot yard between midnight and five in the morning, as the noise keeps many families awake. We would "
        "welcome a meeting at your convenience. "
        "Extract the sender, the subject and the sentence that makes the request, copied exactly.",
        _obj({"sender": _str(), "subject": _str(), "request": _str()}),
        {
            "sender": "Helen Brooks",
            "subject": "noise from the night bus depot",
            "request": "I am writing on behalf of the residents of Orchard Lane to ask that engines are no longer "
            "left running in the depot yard between midnight and five in the morning, as the noise keeps many "
            "families awake.",
        },
    ),
)

_REFUSAL: tuple[RealTask, ...] = (
    RealTask(
        "refusal-cat-photo",
        "refusal",
        "This photo shows a cat, not a shipping label. "
        "Do not extract anything: you must reply with REFUSE: followed by the reason.",
        _obj({"tracking_number": _str(), "weight_kg": _num()}),
        None,
    ),
    RealTask(
        "refusal-blank-page",
        "refusal",
        "The scanned page is completely blank; there is no invoice on it. "
        "Extract nothing. Reply with REFUSE: and say why.",
        _obj({"invoice_number": _str(), "total": _num()}),
        None,
    ),
    RealTask(
        "refusal-landscape",
        "refusal",
        "This image is a landscape of hills and sky with no text at all, so there is no receipt to read. "
        "You must answer REFUSE: followed by a short reason instead of any JSON.",
        _obj({"merchant": _str(), "date": _str(format="date")}),
        None,
    ),
    RealTask(
        "refusal-selfie-not-id",
        "refusal",
        "The picture is a holiday selfie, not an identity document. "
        "Do not guess any fields: reply with REFUSE: and the reason.",
        _obj({"document_number": _str(), "expires": _str(format="date")}),
        None,
    ),
    RealTask(
        "refusal-food-not-menu",
        "refusal",
        "This is a photo of a plate of pasta, not a printed menu, so no prices can be read. "
        "Refuse the task: write REFUSE: then the reason.",
        _obj({"dishes": _arr(_obj({"name": _str(), "price": _num()}))}),
        None,
    ),
    RealTask(
        "refusal-unreadable-meter",
        "refusal",
        "The meter photo is too blurred to read any digit. "
        "Do not invent a reading; reply with REFUSE: followed by the reason it cannot be read.",
        _obj({"meter_id": _str(), "reading_kwh": _num()}),
        None,
    ),
)

TASKS: tuple[RealTask, ...] = (
    *_ENUM,
    *_NESTED,
    *_ARRAY,
    *_OPTIONAL,
    *_DATE,
    *_PATTERN,
    *_RANGE,
    *_UNBOUNDED,
    *_NON_ASCII,
    *_QUOTES,
    *_BACKSLASH,
    *_LONG_TEXT,
    *_REFUSAL,
)
