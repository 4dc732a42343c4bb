"""A Redfish BMC for the tests: sushy-tools' emulator (the one OpenStack Ironic tests against) with
its fake systems driver, basic auth from a bcrypt htpasswd file, on loopback. Run as
`python redfish_bmc.py --config FILE`.

The emulator accepts anything, so it proves the happy path only. Its systems are named, and each
name but `node1` plays a BMC that refuses what the emulator would accept:
- "rejects" answers a boot override with 400; "ignores" answers 204 and keeps its old target (a BMC
  that does not hold the override).
- Vendor profiles, each behaviour from what Ironic and sushy handle (openstack/ironic
  drivers/modules/redfish/management.py and boot.py; openstack/sushy resources/system/system.py,
  resources/manager/virtual_media.py, connector.py, release notes):
  - "ilo5", HPE iLO 5: every System GET carries a weak ETag and a System PATCH without a matching
    If-Match is refused 412 (sushy's connector._etag_handler); BootSourceOverrideMode is read only
    (400 PropertyNotWritable: Ironic writes the mode only when it differs); boot changes are refused
    with `iLO.2.14.UnableToModifyDuringSystemPOST` for the first PROVISION_POST_REFUSALS PATCHes after a
    power-on, and at start (Ironic's _is_during_post_error and its retry); EjectMedia without a JSON
    body is 415 (sushy's eject_media: "HPE iLO ... needs to pass an empty dict"); virtual media under
    Managers only.
  - "idrac9", Dell iDRAC 9 >= 6.00.02 (and iDRAC 10): virtual media under Systems/…/VirtualMedia only,
    none under the Manager (Ironic's _has_vmedia_via_systems); an InsertMedia into a device that holds
    an image is refused (400, IDRAC.2.8.VRM0012 "already in use"): Ironic ejects every slot before it
    inserts (boot.py _insert_vmedia_in_resource, story 2008504).
  - "supermicro", Supermicro X11: boot targets include UsbCd, the CD of virtual media (sushy maps Cd to
    UsbCd for Supermicro); a target PATCH without BootSourceOverrideEnabled is accepted and ignored
    (Ironic story 2008547: Supermicro needs it set with the device); an InsertMedia that names
    Inserted or WriteProtected is 400 (sushy release note fix-insert-media-payload: "SuperMicro X11/X12
    ... treat these fields as read-only").
  - "xcc", Lenovo XClarity Controller (ThinkSystem SD530): virtual media has no InsertMedia/EjectMedia
    actions and is driven by PATCH of the device (sushy release note fix-virtual-media-fallback), which
    attaches only with Inserted set (fix-insert-media-payload: "Lenovo SD530 ... still require
    'Inserted'"); its GET says `Allow: GET, PATCH`."""

from __future__ import annotations

import json
import re
import sys
import threading

import flask
from sushy_tools import error
from sushy_tools.emulator import main
from sushy_tools.emulator.resources.systems import fakedriver

_set_boot_device = fakedriver.FakeDriver.set_boot_device


def set_boot_device(self, identity, boot_source):
    name = self.name(identity)
    if name == "rejects":
        raise error.BadRequest(f"boot source {boot_source} cannot be set now (BMC busy)")
    if name == "ignores":
        return None
    return _set_boot_device(self, identity, boot_source)


fakedriver.FakeDriver.set_boot_device = set_boot_device

VENDOR = {"ilo5": ("HPE", "ProLiant DL380 Gen10"), "idrac9": ("Dell Inc.", "PowerEdge R650"),
          "supermicro": ("Supermicro", "SYS-1029U-TRT"), "xcc": ("Lenovo", "ThinkSystem SD530")}
SYSTEM_URL = re.compile(r"^/redfish/v1/Systems/([^/]+)(/.*)?$")
MANAGER_URL = re.compile(r"^/redfish/v1/Managers/([^/]+)$")

app = main.app
_lock = threading.Lock()
_etag: dict[str, int] = {}  # system identity -> version, bumped by every accepted PATCH and reset
_in_post: dict[str, int] = {}  # system identity -> boot PATCHes still refused (the host is in POST)


def _name(identity: str) -> str | None:
    try:
        return app.systems.name(identity)
    except Exception:
        return None


def _refusals() -> int:
    return int(app.config.get("PROVISION_POST_REFUSALS", 2))


def _fault(status: int, message_id: str, message: str):
    body = {"error": {"code": "Base.1.4.GeneralError", "message": message,
                      "@Message.ExtendedInfo": [{"MessageId": message_id, "Message": message}]}}
    return flask.Response(json.dumps(body), status=status, mimetype="application/json")


def _etag_of(identity: str) -> str:
    return f'W/"{_etag.setdefault(identity, 1)}"'


@app.before_request
def vendor_refusals():
    m = SYSTEM_URL.match(flask.request.path)
    if not m:
        return None
    identity, rest = m.group(1), m.group(2) or ""
    name, method = _name(identity), flask.request.method
    body = flask.request.get_json(silent=True) if flask.request.data else None
    if name == "ilo5":
        if rest == "" and method == "PATCH":
            sent = flask.request.headers.get("If-Match", "")
            if sent.removeprefix("W/") != _etag_of(identity).removeprefix("W/"):
                return _fault(412, "Base.1.4.PreconditionFailed", "the ETag in If-Match does not match the resource")
            boot = (body or {}).get("Boot") or {}
            if "BootSourceOverrideMode" in boot:
                return _fault(400, "Base.1.4.PropertyNotWritable", "The property BootSourceOverrideMode is a read only "
                              "property and cannot be assigned a value.")
            with _lock:
                if boot and _in_post.setdefault(identity, _refusals()) > 0:
                    _in_post[identity] -= 1
                    return _fault(400, "iLO.2.14.UnableToModifyDuringSystemPOST",
                                  "The value for the property cannot be changed while the system is in POST.")
        if rest.endswith("/Actions/VirtualMedia.EjectMedia") and body is None:
            return _fault(415, "Base.1.4.UnsupportedMediaType", "the request needs a JSON body")
    if name == "idrac9" and re.fullmatch(r"/VirtualMedia/[^/]+/Actions/VirtualMedia\.InsertMedia", rest):
        device = rest.split("/")[2]
        if app.vmedia.get_device_image_info(identity, device).inserted:
            return _fault(400, "IDRAC.2.8.VRM0012", "The requested operation cannot be completed because the Virtual "
                          "Media device is already in use.")
    if name == "supermicro":
        if rest == "" and method == "PATCH":
            boot = (body or {}).get("Boot") or {}
            if "BootSourceOverrideTarget" in boot and "BootSourceOverrideEnabled" not in boot:
                return flask.Response(status=204)  # accepted, ignored
        if rest.endswith("/Actions/VirtualMedia.InsertMedia") and {"Inserted", "WriteProtected"} & set(body or {}):
            return _fault(400, "Base.1.4.PropertyNotWritable", "Inserted and WriteProtected are read only")
    if name == "xcc" and re.fullmatch(r"/VirtualMedia/[^/]+/Actions/VirtualMedia\.(Insert|Eject)Media", rest):
        return flask.Response(status=404)  # no actions: PATCH the device
    if name == "xcc" and method == "PATCH" and re.fullmatch(r"/VirtualMedia/[^/]+", rest):
        device = rest.rsplit("/", 1)[1]
        if (body or {}).get("Image") and body.get("Inserted") is True:
            path = app.vmedia.insert_image(identity, device, body["Image"], True, body.get("WriteProtected", True))
            app.systems.set_boot_image(identity, device, boot_image=path, write_protected=True)
        elif (body or {}).get("Inserted") is False:
            app.vmedia.eject_image(identity, device)
            app.systems.set_boot_image(identity, device)
        return flask.Response(status=204)
    if name in VENDOR and method == "POST" and rest == "/Actions/ComputerSystem.Reset":
        with _lock:
            _in_post[identity] = _refusals()  # the host goes through POST again
    return None


@app.after_request
def vendor_views(response):
    m = SYSTEM_URL.match(flask.request.path)
    mm = MANAGER_URL.match(flask.request.path)
    if not (m or mm) or response.status_code >= 400:
        return response
    method = flask.request.method
    if m:
        identity, rest = m.group(1), m.group(2) or ""
        name = _name(identity)
        if name in VENDOR and method in ("PATCH", "POST") and response.status_code < 300:
            with _lock:
                _etag[identity] = _etag.setdefault(identity, 1) + 1
        if name not in VENDOR or method != "GET":
            return response
        if rest == "":
            doc = response.get_json()
            doc["Manufacturer"], doc["Model"] = VENDOR[name]
            if name in ("ilo5", "xcc"):
                doc.pop("VirtualMedia", None)  # under the Manager only
            if name == "supermicro":
                doc["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"].append("UsbCd")
            response.set_data(json.dumps(doc))
            if name == "ilo5":
                response.headers["ETag"] = _etag_of(identity)
        elif name == "xcc" and re.fullmatch(r"/VirtualMedia/[^/]+", rest):
            doc = response.get_json()
            doc.pop("Actions", None)
            response.set_data(json.dumps(doc))
            response.headers["Allow"] = "GET, PATCH"
        return response
    if method == "GET" and _name(mm.group(1)) == "idrac9":  # a manager per system, of its UUID
        doc = response.get_json()
        doc.pop("VirtualMedia", None)  # under the System only
        response.set_data(json.dumps(doc))
    return response


if __name__ == "__main__":
    sys.exit(main.main())
