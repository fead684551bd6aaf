"""Organizations (tenants): members with roles, and invitations by mail."""
