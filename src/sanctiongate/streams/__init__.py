"""The streaming side: a faust worker whose agents keep the index and compare as events arrive."""
