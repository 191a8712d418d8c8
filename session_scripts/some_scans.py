# Demanding scans for testing an external writer (BLISS 2.x, test configuration objects
# robx, roby, diode1, diode2, simu1). In a BLISS shell:
#
#     TEST_SESSION [1]: exec(open("session_scripts/some_scans.py").read())
#
# (some_scans_bliss_as_library.py runs this same file with BLISS as a library.)
# Prints one JSON line per scan: SCAN {"label": ..., "number": ..., "name": ..., "key": ...}
import json as _json

import gevent as _gevent
from bliss.common.scans import a2scan, amesh, ascan, loopscan, timescan
from bliss.scanning.group import Sequence
from bliss.scanning.scan_meta import get_user_scan_meta


def _report(label, scan):
    info = scan.scan_info
    print("SCAN " + _json.dumps({
        "label": label,
        "number": info.get("scan_nb"),
        "name": info.get("type") or scan.name,
        "key": getattr(getattr(scan, "_scan_data", None), "key", None),  # blissdata scan key
        "end_reason": info.get("end_reason"),
    }), flush=True)


_report("ascan", ascan(robx, 0, 1, 5, 0.01, diode1, diode2))
_report("a2scan", a2scan(robx, 0, 1, roby, 1, 0, 4, 0.01, diode1, diode2))
_report("amesh", amesh(robx, 0, 1, 3, roby, 0, 1, 2, 0.01, diode1))
_report("loopscan_mca", loopscan(5, 0.01, diode1, simu1))
_report("timescan", timescan(0.01, diode1, npoints=5))

# user metadata (in every scan while it is set) and a comment (this scan only).
# Metadata reaches the file through scan_meta categories (entry/<category>, "sample" as
# NXsample, "instrument" inside NXinstrument); other keys of a scan's scan_info={...}
# argument go to entry/user_scan_info (ESRF's writer drops them).
_usm = get_user_scan_meta()
_usm.add_categories(["sample"])
# a category keeps its class; BLISS 2.2.1 also fails to remove the last key of a category
_usm.sample.set("@NX_class", {"@NX_class": "NXsample"})
_usm.instrument.set("my_metadata", {"my_metadata": {"@NX_class": "NXcollection",
                                                    "operator": "some_scans", "value": 42}})
_usm.sample.set("some_scans", {"name": "some_scans_sample", "description": "some_scans.py sample"})
try:
    _scan = ascan(robx, 0, 1, 3, 0.01, diode1, run=False)
    _scan.add_comment("a comment from some_scans.py")
    _scan.run()
    _report("user_metadata", _scan)
finally:
    _usm.instrument.remove("my_metadata")
    _usm.sample.remove("some_scans")

# aborted: stopped after about one second
_scan = loopscan(200, 0.02, diode1, diode2, run=False)
_task = _gevent.spawn(_scan.run)
_gevent.sleep(1.0)
_scan.abort()
_task.join()
_report("aborted", _scan)

# a sequence with two child scans
_seq = Sequence(title="some_scans_sequence")
_children = []
with _seq.sequence_context() as _scan_seq:
    for _n in (3, 4):
        _child = ascan(robx, 0, 1, _n, 0.01, diode1, run=False)
        _scan_seq.add_and_run(_child)
        _children.append(_child)
_report("sequence", _seq.scan)
for _i, _child in enumerate(_children, 1):
    _report(f"sequence_child{_i}", _child)
