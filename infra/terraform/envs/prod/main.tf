# prod: a NAT gateway per zone, Multi-AZ database with deletion protection, a Redis replica
# with automatic failover, at least two API tasks; autoscaling with room to grow. The stack's
# defaults are already this safe side; prod still says each one, so none is left to a default.

module "stack" {
  source = "../../stack"

  name                        = "litebase-${var.environment}"
  availability_zones          = var.availability_zones
  domain_name                 = var.domain_name
  certificate_arn             = var.certificate_arn
  image_tag                   = var.image_tag
  openai_api_key_secret_arn   = var.openai_api_key_secret_arn
  app_url                     = var.app_url
  mail_from                   = var.mail_from
  smtp_credentials_secret_arn = var.smtp_credentials_secret_arn
  cors_origins                = var.cors_origins
  settings                    = var.settings

  key_deletion_window_days = 30
  single_nat_gateway       = false
  keep_images              = 50
  database = {
    instance_class           = "db.m7g.large"
    allocated_storage_gb     = 100
    max_allocated_storage_gb = 1000
    multi_az                 = true
    backup_retention_days    = 30
    deletion_protection      = true
  }
  cache = {
    node_type          = "cache.m7g.large"
    replicas           = 1
    automatic_failover = true
  }
  load_balancer_deletion_protection = true
  api = {
    cpu    = 1024
    memory = 2048
    count  = { min = 2, desired = 2, max = 20 }
  }
  worker = {
    cpu         = 2048
    memory      = 4096
    concurrency = 4
    count       = { min = 2, desired = 2, max = 40 }
  }
}
