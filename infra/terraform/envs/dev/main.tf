# dev: the whole stack at its smallest — one NAT gateway, single-zone database and cache,
# one API task and one worker, things that can be torn down. Same stack as prod, other sizes.

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

  key_deletion_window_days = 7
  single_nat_gateway       = true
  keep_images              = 10
  # Torn down with its files; old versions kept a week.
  files_force_destroy           = true
  files_noncurrent_version_days = 7
  database = {
    instance_class        = "db.t4g.micro"
    allocated_storage_gb  = 20
    multi_az              = false
    backup_retention_days = 7
    deletion_protection   = false
  }
  cache = {
    node_type          = "cache.t4g.micro"
    replicas           = 0
    automatic_failover = false
  }
  load_balancer_deletion_protection = false
  api = {
    cpu    = 256
    memory = 512
    count  = { min = 1, desired = 1, max = 2 }
  }
  worker = {
    cpu         = 512
    memory      = 1024
    concurrency = 2
    count       = { min = 1, desired = 1, max = 2 }
  }
}
