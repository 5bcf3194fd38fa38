"""The CDK app of Treadle (see app.py); constants shared with the platform in names.py."""
