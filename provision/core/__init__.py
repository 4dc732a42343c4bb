"""The rules HTTP and TFTP share, with no framework under them: which file a served path names
(files.py), the boot config a MAC gets (boot.py), and whether a kickstart fetch is allowed
(kickstart.py). Views and the TFTP backend parse, call one of these, and render the answer."""
