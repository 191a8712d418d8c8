"""NeXus rules that both sides need: the BLISS session (config validation) and the writer.

No dependencies beyond the standard library: the BLISS side imports this next to an
older blissdata.
"""

import re

#: NeXus item-name rule (NIAC), with "." allowed inside names so that entries are "N.M".
NAME_RE = re.compile(r"^[a-zA-Z0-9_]([a-zA-Z0-9_.]*[a-zA-Z0-9_])?$")

#: group classes the NeXus definitions allow as children (NXDL, NeXus 2024).
#: Both classes forbid others, and user metadata may ask for anything.
ALLOWED_GROUPS = {
    "NXentry": frozenset({
        "NXcollection", "NXdata", "NXinstrument", "NXlog", "NXmonitor", "NXnote", "NXparameters",
        "NXprocess", "NXsample", "NXsubentry", "NXuser"}),
    "NXinstrument": frozenset({
        "NXactuator", "NXaperture", "NXattenuator", "NXbeam", "NXbeam_stop", "NXbending_magnet",
        "NXcapillary", "NXcollection", "NXcollimator", "NXcrystal", "NXdata", "NXdetector",
        "NXdetector_group", "NXdisk_chopper", "NXenvironment", "NXevent_data", "NXfabrication",
        "NXfermi_chopper", "NXfilter", "NXflipper", "NXguide", "NXhistory", "NXinsertion_device",
        "NXlog", "NXmirror", "NXmoderator", "NXmonochromator", "NXnote", "NXparameters",
        "NXpolarizer", "NXpositioner", "NXsensor", "NXsource", "NXvelocity_selector", "NXxraylens"}),
}

NX_CLASS_RE = re.compile(r"^NX[a-z][a-z0-9_]*$")
