# Before infra/terraform/stack existed, this environment called each module itself. These
# blocks tell Terraform that a state applied then already holds the stack's resources under
# their old addresses, so the next plan moves them instead of replacing them (the database
# and the KMS key among them). Harmless on a new state; keep them until every state of this
# environment has been applied once since.

moved {
  from = module.keys
  to   = module.stack.module.keys
}

moved {
  from = module.network
  to   = module.stack.module.network
}

moved {
  from = module.registry
  to   = module.stack.module.registry
}

moved {
  from = module.database
  to   = module.stack.module.database
}

moved {
  from = module.cache
  to   = module.stack.module.cache
}

moved {
  from = module.edge
  to   = module.stack.module.edge
}

moved {
  from = module.service
  to   = module.stack.module.service
}
