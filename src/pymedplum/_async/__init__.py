"""The client, written once as async code here; pymedplum._sync is generated from it."""
